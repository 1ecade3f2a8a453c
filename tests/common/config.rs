//! One builder for the proxy's YAML file (SPEC §2), shared by every test: top-level keys,
//! `defaults`, `limits`, `listen` lists and routes of the four kinds. serde_yaml writes the
//! text, so every value is quoted safely (`{id}` templates, `header:X-Api-Key`, file paths)
//! and the proxy reads back exactly what the test built. Tests of `check` that feed it
//! deliberately odd YAML keep that YAML as literal text; [`Config::raw`] covers the rest.
//!
//! ```ignore
//! let yaml = Config::new()
//!     .set("defaults.heartbeat", "200ms")
//!     .set("limits.per_client", 2)
//!     .route(Route::sse("/s", upstream.url("/stream")).set("linger", "100ms"))
//!     .route(Route::poll("/o/{id}", api.url("/o/{id}")).opt("interval", "100ms"))
//!     .yaml();
//! let proxy = Proxy::start(&yaml);
//! ```

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// A value for any setter: a string, integer, boolean, path, address, list of values, or a
/// YAML fragment parsed by [`yaml`]. Strings stay strings (`"2"` is written `'2'`), so pass
/// numbers and booleans as such.
#[derive(Clone, Debug, PartialEq)]
pub struct Yaml(Value);

/// Parses a YAML fragment (e.g. `"{ allow_origins: ['https://a'], allow_credentials: true }"`)
/// into a value, for nested blocks that read best as the YAML itself. Panics if it does not
/// parse.
pub fn yaml(text: &str) -> Yaml {
    match serde_yaml::from_str(text) {
        Ok(value) => Yaml(value),
        Err(err) => panic!("test YAML fragment {text:?} does not parse: {err}"),
    }
}

impl From<&str> for Yaml {
    fn from(text: &str) -> Yaml {
        Yaml(Value::String(text.to_string()))
    }
}

impl From<String> for Yaml {
    fn from(text: String) -> Yaml {
        Yaml(Value::String(text))
    }
}

impl From<&String> for Yaml {
    fn from(text: &String) -> Yaml {
        Yaml(Value::String(text.clone()))
    }
}

impl From<bool> for Yaml {
    fn from(flag: bool) -> Yaml {
        Yaml(Value::Bool(flag))
    }
}

macro_rules! yaml_from_integer {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Yaml {
            fn from(n: $ty) -> Yaml {
                Yaml(Value::from(n))
            }
        }
    )*};
}
yaml_from_integer!(i32, i64, u32, u64, usize);

impl From<&Path> for Yaml {
    fn from(path: &Path) -> Yaml {
        Yaml(Value::String(path.display().to_string()))
    }
}

impl From<PathBuf> for Yaml {
    fn from(path: PathBuf) -> Yaml {
        Yaml::from(path.as_path())
    }
}

impl From<SocketAddr> for Yaml {
    fn from(addr: SocketAddr) -> Yaml {
        Yaml(Value::String(addr.to_string()))
    }
}

impl<T: Into<Yaml>> From<Vec<T>> for Yaml {
    fn from(items: Vec<T>) -> Yaml {
        Yaml(Value::Sequence(
            items.into_iter().map(|item| item.into().0).collect(),
        ))
    }
}

impl<T: Into<Yaml>, const N: usize> From<[T; N]> for Yaml {
    fn from(items: [T; N]) -> Yaml {
        Yaml::from(Vec::from(items))
    }
}

/// Sets `path` (keys separated by `.`, e.g. `slow_client.max_lag`) in `map`, creating the
/// mappings on the way.
fn insert(map: &mut Mapping, path: &str, value: Yaml) {
    let (key, rest) = match path.split_once('.') {
        Some((key, rest)) => (key, Some(rest)),
        None => (path, None),
    };
    let key = Value::String(key.to_string());
    match rest {
        None => {
            map.insert(key, value.0);
        }
        Some(rest) => {
            let child = map
                .entry(key)
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            match child {
                Value::Mapping(child) => insert(child, rest, value),
                other => panic!("cannot set {rest:?} inside the non-mapping {other:?}"),
            }
        }
    }
}

/// A whole configuration file, less `listen`/`admin` unless set (as [`super::Proxy::start`]
/// adds those).
#[derive(Clone, Debug, Default)]
pub struct Config {
    top: Mapping,
    routes: Vec<Route>,
    raw: String,
}

impl Config {
    /// An empty configuration: no keys, no routes.
    pub fn new() -> Config {
        Config::default()
    }

    /// Sets a key by its YAML path, the way `check` names it: `"shutdown_grace"`,
    /// `"defaults.heartbeat"`, `"limits.per_client"`, `"limits.slow_client.policy"`.
    pub fn set(mut self, path: &str, value: impl Into<Yaml>) -> Config {
        insert(&mut self.top, path, value.into());
        self
    }

    /// The `listen` list, for TLS and h2c listeners (plain tests let `Proxy::start` pick the
    /// address).
    pub fn listen(self, entries: impl IntoIterator<Item = Listen>) -> Config {
        let entries: Vec<Yaml> = entries.into_iter().map(|entry| entry.0).collect();
        self.set("listen", entries)
    }

    /// `admin: { listen: ADDR }`, for configurations that also set [`Config::listen`].
    pub fn admin(self, addr: SocketAddr) -> Config {
        self.set("admin.listen", addr)
    }

    /// Defines the authenticator `auth.NAME.KIND` (`kind` is `jwt` or `forward`) with its
    /// block, e.g. `yaml("{ secret: 'file:/tmp/s', algorithms: [HS256] }")`.
    pub fn authenticator(self, name: &str, kind: &str, block: Yaml) -> Config {
        self.set(&format!("auth.{name}.{kind}"), block)
    }

    /// Appends a route to `routes`.
    pub fn route(mut self, route: Route) -> Config {
        self.routes.push(route);
        self
    }

    /// Appends `text` verbatim after the generated YAML: the escape hatch for keys a test
    /// must spell itself. It must be whole top-level lines ending in a newline.
    pub fn raw(mut self, text: &str) -> Config {
        self.raw.push_str(text);
        self
    }

    /// The YAML text: `listen` and `admin` first, the other top-level keys in the order they
    /// were set, then `routes`, then any [`Config::raw`] text.
    pub fn yaml(&self) -> String {
        let mut file = Mapping::new();
        for key in ["listen", "admin"] {
            if let Some(value) = self.top.get(key) {
                file.insert(Value::from(key), value.clone());
            }
        }
        for (key, value) in &self.top {
            if !file.contains_key(key) {
                file.insert(key.clone(), value.clone());
            }
        }
        if !self.routes.is_empty() {
            let routes = self.routes.iter().map(Route::to_value).collect();
            file.insert(Value::from("routes"), Value::Sequence(routes));
        }
        let mut text = if file.is_empty() {
            String::new()
        } else {
            serde_yaml::to_string(&file).expect("a mapping serializes")
        };
        text.push_str(&self.raw);
        text
    }
}

/// One entry of the `listen` list.
#[derive(Clone, Debug)]
pub struct Listen(Yaml);

impl Listen {
    /// A cleartext HTTP/1.1 listener: `- ADDR`.
    pub fn plain(addr: impl Display) -> Listen {
        Listen(addr.to_string().into())
    }

    /// An HTTPS listener (HTTP/1.1 and h2 by ALPN): `- { addr, tls: { cert, key } }`.
    pub fn tls(addr: impl Display, cert: impl Into<Yaml>, key: impl Into<Yaml>) -> Listen {
        let mut entry = Mapping::new();
        insert(&mut entry, "addr", addr.to_string().into());
        insert(&mut entry, "tls.cert", cert.into());
        insert(&mut entry, "tls.key", key.into());
        Listen(Yaml(Value::Mapping(entry)))
    }

    /// A cleartext listener that also speaks HTTP/2 by prior knowledge: `- { addr, h2c: true }`.
    pub fn h2c(addr: impl Display) -> Listen {
        let mut entry = Mapping::new();
        insert(&mut entry, "addr", addr.to_string().into());
        insert(&mut entry, "h2c", true.into());
        Listen(Yaml(Value::Mapping(entry)))
    }
}

/// One entry of `routes`: its `path`, keys beside `path`, and its kind's block.
#[derive(Clone, Debug)]
pub struct Route {
    path: String,
    fields: Mapping,
    kind: &'static str,
    block: Mapping,
}

impl Route {
    fn new(kind: &'static str, path: &str, key: &str, target: Yaml) -> Route {
        let mut block = Mapping::new();
        insert(&mut block, key, target);
        Route {
            path: path.to_string(),
            fields: Mapping::new(),
            kind,
            block,
        }
    }

    /// An `sse` route proxying `upstream` (a URL template, or a list of them for a pool).
    pub fn sse(path: &str, upstream: impl Into<Yaml>) -> Route {
        Route::new("sse", path, "upstream", upstream.into())
    }

    /// A `poll` route polling `url` (a URL template, or a list of them for a pool).
    pub fn poll(path: &str, url: impl Into<Yaml>) -> Route {
        Route::new("poll", path, "url", url.into())
    }

    /// A `websocket` route reading `url` (`ws://` or `wss://`, or a list for a pool).
    pub fn websocket(path: &str, url: impl Into<Yaml>) -> Route {
        Route::new("websocket", path, "url", url.into())
    }

    /// A plain reverse-proxy `http` route to `upstream` (a base URL, or a list for a pool).
    pub fn http(path: &str, upstream: impl Into<Yaml>) -> Route {
        Route::new("http", path, "upstream", upstream.into())
    }

    /// Sets an option inside the kind's block, by its path there: `interval`, `emit`,
    /// `ca_file`, `headers.X-Api-Key`, `health_check.path`.
    pub fn opt(mut self, path: &str, value: impl Into<Yaml>) -> Route {
        insert(&mut self.block, path, value.into());
        self
    }

    /// Sets a key beside `path`: `per_client`, `heartbeat`, `replay`, `linger`,
    /// `max_lifetime`, `forward_headers`, `cors`, `upstream_error_event`, ...
    pub fn set(mut self, path: &str, value: impl Into<Yaml>) -> Route {
        insert(&mut self.fields, path, value.into());
        self
    }

    /// The route's `auth:`: an authenticator's name, `none`, or a
    /// `yaml("{ use: NAME, require: { sub: '{user}' } }")` fragment.
    pub fn auth(self, choice: impl Into<Yaml>) -> Route {
        self.set("auth", choice)
    }

    /// `path`, the keys beside it, then the kind's block, as one mapping.
    fn to_value(&self) -> Value {
        let mut route = Mapping::new();
        route.insert(Value::from("path"), Value::from(self.path.as_str()));
        for (key, value) in &self.fields {
            route.insert(key.clone(), value.clone());
        }
        assert!(
            !self.fields.contains_key(self.kind),
            "route {}: set the {} block's keys with Route::opt",
            self.path,
            self.kind
        );
        route.insert(Value::from(self.kind), Value::Mapping(self.block.clone()));
        Value::Mapping(route)
    }
}
