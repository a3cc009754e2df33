//! The segment list's cursor: base64url of the last list entry's sort key, checked on the way
//! back in so that only what the list issued is accepted.

use base64::Engine;

use super::keys::LISTED_PREFIX;
use domain::SegmentGuid;

/// The list cursor: base64url of the last list entry's sort key.
pub(super) fn encode_list_cursor(sk: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk.as_bytes())
}

/// `None` for anything the list did not issue.
pub fn decode_list_cursor(raw: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).ok()?;
    let sk = String::from_utf8(bytes).ok()?;
    let (at, seg) = sk.strip_prefix(LISTED_PREFIX)?.split_once('#')?;
    (at.len() == 13 && at.bytes().all(|b| b.is_ascii_digit()) && SegmentGuid::parse(seg).is_ok())
        .then_some(sk)
}

#[cfg(test)]
mod tests {
    use super::super::keys::listed_sk;
    use super::*;

    #[test]
    fn list_cursors_round_trip_and_refuse_foreign_input() {
        let sk = listed_sk(1_795_000_000_000, SegmentGuid::generate());
        assert_eq!(decode_list_cursor(&encode_list_cursor(&sk)), Some(sk));
        for bad in ["", "!!", "eyJnIjoxfQ", &encode_list_cursor("S#12#x"), &encode_list_cursor("X#a")] {
            assert_eq!(decode_list_cursor(bad), None, "{bad}");
        }
    }
}
