//! The alerting rules of the deployment kit (`conf/alerts.yml`): the compose stack's
//! Prometheus loads them, every rule is complete (a severity, a summary, a description an
//! operator can act on), and every series and label value a rule selects is one a running
//! sse-edge exports — so no rule silently watches a name that does not exist.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::demo_metrics;
use common::promql::selectors;
use serde_yaml::Value as Yaml;

/// Where Prometheus reads the rules in the compose stack.
const RULES_IN_CONTAINER: &str = "/etc/prometheus/alerts.yml";

fn read_yaml(relative: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path).expect("read");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every rule of every group.
fn rules() -> Vec<Yaml> {
    let alerts = read_yaml("conf/alerts.yml");
    let groups = alerts["groups"].as_sequence().expect("groups");
    let rules: Vec<Yaml> = groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect();
    assert!(!rules.is_empty(), "rules");
    rules
}

fn text<'a>(rule: &'a Yaml, path: &[&str]) -> &'a str {
    let value = path.iter().fold(rule, |v, key| &v[*key]);
    value.as_str().unwrap_or_default()
}

#[test]
fn the_compose_stack_prometheus_loads_the_alert_rules() {
    let prometheus = read_yaml("conf/prometheus.yml");
    let files: Vec<&str> = prometheus["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(files, [RULES_IN_CONTAINER]);
    let compose = read_yaml("docker-compose.yml");
    let volumes = compose["services"]["prometheus"]["volumes"]
        .as_sequence()
        .expect("prometheus volumes");
    let mount = format!("./conf/alerts.yml:{RULES_IN_CONTAINER}:ro");
    assert!(
        volumes.iter().any(|v| v.as_str() == Some(mount.as_str())),
        "prometheus mounts {mount}"
    );
}

#[test]
fn every_rule_is_complete_and_named_once() {
    let mut names = BTreeSet::new();
    for rule in rules() {
        let name = text(&rule, &["alert"]);
        assert!(name.starts_with("SseEdge"), "alert name: {name:?}");
        assert!(names.insert(name.to_string()), "{name} is defined twice");
        assert!(!text(&rule, &["expr"]).is_empty(), "{name}: expr");
        let severity = text(&rule, &["labels", "severity"]);
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description"] {
            let said = text(&rule, &["annotations", annotation]);
            assert!(said.len() > 20, "{name}: {annotation} says what happens");
        }
    }
    for expected in [
        "SseEdgeDown",
        "SseEdgeReloadRefused",
        "SseEdgeClusterRedisDown",
    ] {
        assert!(names.contains(expected), "{expected} is among the rules");
    }
}

#[test]
fn every_rule_selects_families_and_label_values_sse_edge_exports() {
    let exported = demo_metrics();
    let mut selected = 0;
    for rule in rules() {
        let name = text(&rule, &["alert"]);
        for (family, matchers) in selectors(text(&rule, &["expr"])) {
            assert!(
                exported.contains(&format!("# TYPE {family} ")),
                "{name}: sse-edge exports no {family}"
            );
            for (label, _, value) in matchers {
                for alternative in value.split('|') {
                    let series = format!("{label}=\"{alternative}\"");
                    let found = exported
                        .lines()
                        .any(|l| l.starts_with(family.as_str()) && l.contains(&series));
                    assert!(found, "{name}: {family} has no series with {series}");
                }
            }
            selected += 1;
        }
    }
    assert!(selected >= 10, "the rules watch sse-edge's own series");
}

#[test]
fn selectors_are_read_with_their_matchers() {
    let expr = r#"sum by (route) (increase(sse_edge_polls_total{result="error"}[5m])) > 2
        and rate(sse_edge_event_delivery_seconds_bucket{reason!~"a|b", route="/x"}[1m])"#;
    let found = selectors(expr);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, "sse_edge_polls_total");
    assert_eq!(found[0].1, [("result".into(), "=".into(), "error".into())]);
    assert_eq!(found[1].0, "sse_edge_event_delivery_seconds");
    assert_eq!(found[1].1[0], ("reason".into(), "!~".into(), "a|b".into()));
    assert_eq!(found[1].1[1], ("route".into(), "=".into(), "/x".into()));
}
