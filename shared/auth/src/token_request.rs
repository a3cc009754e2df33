//! Parsing of a token request (RFC 6749 §4.4.2 and §2.3.1), free of any I/O.

use base64::Engine;
use serde::Deserialize;

use super::ClientSecret;
use super::oauth::OAuthError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// The raw `scope` parameter, if sent.
    pub scope: Option<String>,
}

/// Largest token request body accepted; a real one is well under 1 KiB.
pub const MAX_BODY: usize = 8 * 1024;

/// Unknown members are ignored, as unknown form parameters are (RFC 6749 §3.2).
#[derive(Debug, Default, Deserialize)]
struct JsonBody {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

struct Params {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub fn parse(
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenRequest, OAuthError> {
    if body.len() > MAX_BODY {
        return Err(OAuthError::invalid_request("the request body is too large"));
    }
    let params = parse_body(content_type, body)?;
    let basic = authorization.map(parse_basic).transpose()?;

    let (client_id, secret) = match (basic, params.client_id, params.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            // RFC 6749 §2.3: a client MUST NOT use more than one authentication method.
            return Err(OAuthError::invalid_request(
                "client credentials were sent both in the Authorization header and in the body",
            ));
        }
        (Some((id, secret)), None, None) => (id, secret),
        (None, Some(id), Some(secret)) => (id, secret),
        _ => return Err(OAuthError::invalid_client()),
    };

    match params.grant_type.as_deref() {
        None => return Err(OAuthError::invalid_request("missing grant_type")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                super::OAuthErrorKind::UnsupportedGrantType,
                "only grant_type=client_credentials is supported",
            ));
        }
    }
    let client_secret = ClientSecret::from_presented(&secret).ok_or_else(OAuthError::invalid_client)?;
    if client_id.is_empty() {
        return Err(OAuthError::invalid_client());
    }
    Ok(TokenRequest { client_id, client_secret, scope: params.scope })
}

fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Params, OAuthError> {
    let media = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "application/json" => {
            let b: JsonBody = serde_json::from_slice(body)
                .map_err(|e| OAuthError::invalid_request(format!("the JSON body is invalid: {e}")))?;
            Ok(Params {
                grant_type: b.grant_type,
                scope: b.scope,
                client_id: b.client_id,
                client_secret: b.client_secret,
            })
        }
        "application/x-www-form-urlencoded" | "" => parse_form(body),
        other => Err(OAuthError::invalid_request(format!(
            "unsupported content type '{other}': send application/x-www-form-urlencoded"
        ))),
    }
}

fn parse_form(body: &[u8]) -> Result<Params, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| OAuthError::invalid_request("the form body is not valid"))?;
    let mut p = Params { grant_type: None, scope: None, client_id: None, client_secret: None };
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "grant_type" => &mut p.grant_type,
            "scope" => &mut p.scope,
            "client_id" => &mut p.client_id,
            "client_secret" => &mut p.client_secret,
            // RFC 6749 §3.2: unrecognized parameters are ignored.
            _ => continue,
        };
        if slot.is_some() {
            // RFC 6749 §3.2: parameters MUST NOT be included more than once.
            return Err(OAuthError::invalid_request(format!("parameter '{k}' is repeated")));
        }
        *slot = Some(v);
    }
    Ok(p)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` per RFC 6749 §2.3.1. Any other scheme
/// counts as no client authentication.
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| OAuthError::invalid_client())?;
    let text = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client())?;
    let (id, secret) = text.split_once(':').ok_or_else(OAuthError::invalid_client)?;
    Ok((form_decode(id), form_decode(secret)))
}

fn form_decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OAuthErrorKind as K;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    }

    fn kind(r: Result<TokenRequest, OAuthError>) -> K {
        r.unwrap_err().kind
    }

    #[test]
    fn seed_request_basic_and_form() {
        let r = parse(Some(&basic("abc", "s3cret")), FORM, b"grant_type=client_credentials").unwrap();
        assert_eq!(r.client_id, "abc");
        assert_eq!(r.client_secret.expose(), "s3cret");
        assert_eq!(r.scope, None);
    }

    #[test]
    fn credentials_in_form_body_and_scope() {
        let body = b"grant_type=client_credentials&client_id=abc&client_secret=s&scope=segments%3Aread+segments%3Awrite";
        let r = parse(None, FORM, body).unwrap();
        assert_eq!(r.client_id, "abc");
        assert_eq!(r.scope.as_deref(), Some("segments:read segments:write"));
    }

    #[test]
    fn json_body_accepted() {
        let r = parse(
            Some(&basic("abc", "s")),
            Some("application/json; charset=utf-8"),
            br#"{"grant_type":"client_credentials","scope":"endUsers:read"}"#,
        )
        .unwrap();
        assert_eq!(r.scope.as_deref(), Some("endUsers:read"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let r = parse(Some(&basic("a%3Ab", "x%2By+z")), FORM, b"grant_type=client_credentials").unwrap();
        assert_eq!(r.client_id, "a:b");
        assert_eq!(r.client_secret.expose(), "x+y z");
    }

    #[test]
    fn body_size_edge() {
        let base = "grant_type=client_credentials&pad=";
        let at_limit = format!("{base}{}", "x".repeat(MAX_BODY - base.len()));
        assert_eq!(at_limit.len(), MAX_BODY);
        assert!(parse(Some(&basic("a", "b")), FORM, at_limit.as_bytes()).is_ok());
        let past = format!("{at_limit}x");
        assert_eq!(kind(parse(Some(&basic("a", "b")), FORM, past.as_bytes())), K::InvalidRequest);
    }

    #[test]
    fn errors() {
        assert_eq!(kind(parse(None, FORM, b"grant_type=client_credentials")), K::InvalidClient);
        assert_eq!(kind(parse(Some(&basic("a", "b")), FORM, b"")), K::InvalidRequest);
        assert_eq!(
            kind(parse(Some(&basic("a", "b")), FORM, b"grant_type=password")),
            K::UnsupportedGrantType
        );
        assert_eq!(
            kind(parse(
                Some(&basic("a", "b")),
                FORM,
                b"grant_type=client_credentials&grant_type=client_credentials"
            )),
            K::InvalidRequest
        );
        assert_eq!(
            kind(parse(
                Some(&basic("a", "b")),
                FORM,
                b"grant_type=client_credentials&client_id=a&client_secret=b"
            )),
            K::InvalidRequest
        );
        assert_eq!(
            kind(parse(Some(&basic("a", "b")), Some("text/plain"), b"grant_type=client_credentials")),
            K::InvalidRequest
        );
        assert_eq!(kind(parse(Some(&basic("a", "b")), Some("application/json"), b"{")), K::InvalidRequest);
        assert_eq!(kind(parse(Some("Bearer xyz"), FORM, b"grant_type=client_credentials")), K::InvalidClient);
        assert_eq!(kind(parse(Some("Basic !!!"), FORM, b"grant_type=client_credentials")), K::InvalidClient);
        assert_eq!(
            kind(parse(Some(&basic("a", "")), FORM, b"grant_type=client_credentials")),
            K::InvalidClient
        );
        assert_eq!(kind(parse(Some(&basic("a", "b")), FORM, &vec![b'a'; MAX_BODY + 1])), K::InvalidRequest);
    }
}
