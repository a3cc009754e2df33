//! The worker's events: an SQS batch of S3 notifications in, a partial batch response out.

use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::SqsMessage;

/// What one queue message asks for: the import files it names (none for S3's test event, or
/// a body that is no S3 notification).
pub fn upload_keys(message: &SqsMessage) -> Vec<String> {
    let Some(body) = message.body.as_deref() else { return Vec::new() };
    match serde_json::from_str::<S3Event>(body) {
        Ok(event) => event
            .records
            .into_iter()
            .filter(|r| r.event_name.as_deref().is_some_and(|n| n.starts_with("ObjectCreated")))
            .filter_map(|r| r.s3.object.key)
            .map(|k| decode_key(&k))
            .collect(),
        Err(e) => {
            // S3 sends `{"Event": "s3:TestEvent", ...}` once when the notification is set up.
            if !body.contains("s3:TestEvent") {
                tracing::warn!(error = %e, "a queue message that is no S3 notification; ignored");
            }
            Vec::new()
        }
    }
}

/// S3 sends keys URL-encoded, with `+` for a space.
fn decode_key(key: &str) -> String {
    percent_encoding::percent_decode_str(&key.replace('+', " ")).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: serde_json::Value) -> SqsMessage {
        serde_json::from_value(json!({"messageId": "m", "body": body.to_string()})).unwrap()
    }

    fn record(name: &str, key: &str) -> serde_json::Value {
        json!({"eventVersion": "2.1", "eventSource": "aws:s3", "eventTime": "2026-12-06T00:00:00.000Z",
               "eventName": name, "userIdentity": {"principalId": "x"}, "requestParameters":
               {"sourceIPAddress": "127.0.0.1"}, "responseElements": {},
               "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "b", "arn": "arn:aws:s3:::b"},
                      "object": {"key": key, "size": 1, "eTag": "e"}}})
    }

    #[test]
    fn upload_keys_are_decoded_as_s3_encodes_them_and_other_events_have_none() {
        let m = message(json!({"Records": [
            record("ObjectCreated:Put", "uploads/acme/i/x+y%2Bz%C3%A9"),
            record("ObjectRemoved:Delete", "uploads/acme/i/gone"),
        ]}));
        assert_eq!(upload_keys(&m), vec!["uploads/acme/i/x y+zé".to_string()]);
        assert!(upload_keys(&message(json!({"Service": "Amazon S3", "Event": "s3:TestEvent"}))).is_empty());
        assert!(upload_keys(&message(json!([1, 2]))).is_empty());
    }
}
