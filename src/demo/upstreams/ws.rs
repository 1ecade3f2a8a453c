//! The demo backend's WebSocket trade feed: acknowledges a subscribe, then streams trades.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use super::next_seq;

/// `ws://…/ws`: waits for `{"op":"subscribe","channel":…}`, acknowledges it, then forwards
/// every trade. Pings are answered by tungstenite while reading.
pub(super) async fn serve_ws(stream: TcpStream, mut trades: broadcast::Receiver<(u64, String)>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut subscribed_after: Option<u64> = None;
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(channel) = subscribe_channel(text.as_str()) {
                        let seq = next_seq();
                        subscribed_after = Some(seq);
                        let ack = serde_json::json!({ "type": "subscribed", "seq": seq, "channel": channel });
                        if ws.send(Message::text(ack.to_string())).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            trade = trades.recv() => match trade {
                Ok((seq, text)) => {
                    if subscribed_after.is_some_and(|after| seq > after)
                        && ws.send(Message::text(text)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The channel of a `{"op":"subscribe","channel":…}` message.
fn subscribe_channel(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("op")?.as_str()? != "subscribe" {
        return None;
    }
    Some(
        value
            .get("channel")
            .and_then(|c| c.as_str())
            .unwrap_or("trades")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::super::start;
    use super::subscribe_channel;

    #[test]
    fn subscribe_messages_are_recognised() {
        assert_eq!(
            subscribe_channel(r#"{"op":"subscribe","channel":"trades"}"#).as_deref(),
            Some("trades")
        );
        assert_eq!(subscribe_channel(r#"{"op":"ping"}"#), None);
        assert_eq!(subscribe_channel("not json"), None);
    }
    #[tokio::test]
    async fn websocket_feed_acknowledges_subscribe_then_sends_trades() {
        let addrs = start().await.expect("start");
        let url = format!("ws://{}/ws", addrs.ws);
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect");
        ws.send(Message::text(r#"{"op":"subscribe","channel":"trades"}"#))
            .await
            .expect("send");
        let mut types = Vec::new();
        let mut seqs = Vec::new();
        while types.len() < 2 {
            let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a message within 5s")
                .expect("open")
                .expect("frame");
            if let Message::Text(text) = message {
                let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
                types.push(value["type"].as_str().unwrap_or_default().to_string());
                seqs.push(value["seq"].as_u64().expect("seq"));
            }
        }
        assert_eq!(types, ["subscribed", "trade"]);
        assert!(seqs[1] > seqs[0], "{seqs:?}");
    }
}
