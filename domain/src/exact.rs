//! JSON numbers with every digit the caller sent. `serde_json` reads a number it cannot hold
//! as an integer through an `f64`, which keeps about 17 significant digits, while an attribute
//! of type Number holds DynamoDB's 38. Before a body is parsed, [`protect_numbers`] rewrites
//! each number literal an `f64` would change into a one-member object `{"\u0000number":
//! "<the literal>"}`; [`number_text`] reads either form back as text. The rest of the body is
//! untouched, and a body without such numbers is not copied at all.

use std::borrow::Cow;

use serde_json::Value;

/// The member name of a protected number: no caller's JSON names a member this way by
/// accident, and one that does only spells a number as text, which a Number accepts anyway.
pub const NUMBER_KEY: &str = "\u{0}number";

/// The body with every number literal that an `f64` would change protected (see the module).
/// Bytes that are not valid JSON are left for the parser to report.
pub fn protect_numbers(body: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => i = skip_string(body, i),
            b'-' | b'0'..=b'9' => {
                let end = number_end(body, i);
                let literal = &body[i..end];
                if changes_through_f64(literal) {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
                    o.extend_from_slice(&body[copied..i]);
                    o.extend_from_slice(b"{\"\\u0000number\":\"");
                    o.extend_from_slice(literal);
                    o.extend_from_slice(b"\"}");
                    copied = end;
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(body),
        Some(mut o) => {
            o.extend_from_slice(&body[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The text of a number as the caller sent it: a JSON number, or one [`protect_numbers`]
/// protected.
pub fn number_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Object(m) if m.len() == 1 => match m.get(NUMBER_KEY) {
            Some(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
            _ => None,
        },
        _ => None,
    }
}

/// JSON text of a parsed body with each protected number written back as the literal the
/// caller sent: what is stored and shown of a rule, digits intact.
pub fn to_json_text(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) if m.len() == 1 && matches!(m.get(NUMBER_KEY), Some(Value::String(_))) => {
            if let Some(Value::String(s)) = m.get(NUMBER_KEY) {
                out.push_str(s);
            }
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Whether `v` is a number (either form).
pub fn is_number(v: &Value) -> bool {
    number_text(v).is_some()
}

/// An exact decimal of at most [`Decimal::MAX_DIGITS`] significant digits, compared digit by
/// digit: never through a float. Built without allocating, so the rule engine can read a
/// stored Number on every evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    negative: bool,
    /// The power of ten of the leading significant digit (meaningless for zero).
    power: i64,
    /// The significant digits as ASCII, no leading or trailing zeros; empty for zero.
    digits: [u8; Decimal::MAX_DIGITS],
    len: u8,
}

impl Decimal {
    /// DynamoDB keeps 38 significant digits; two more leave room for any stored value.
    pub const MAX_DIGITS: usize = 40;

    /// Reads decimal text (`-12.50`, `1e-3`, `0012`); `None` for anything else or for more
    /// significant digits than [`Self::MAX_DIGITS`].
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let negative = b.first() == Some(&b'-');
        let mut i = usize::from(negative || b.first() == Some(&b'+'));
        let mut digits = [0u8; Self::MAX_DIGITS];
        let mut len = 0usize;
        // Digits seen before the point, counting from the first significant one.
        let mut int_digits: i64 = 0;
        let mut leading_frac_zeros: i64 = 0;
        let mut trailing_zeros = 0usize;
        let (mut seen_digit, mut seen_point) = (false, false);
        while i < b.len() {
            match b[i] {
                b'0'..=b'9' => {
                    seen_digit = true;
                    let d = b[i];
                    if len == 0 && d == b'0' {
                        if seen_point {
                            leading_frac_zeros += 1;
                        }
                    } else {
                        if !seen_point {
                            int_digits += 1;
                        }
                        if d == b'0' {
                            trailing_zeros += 1;
                        } else {
                            // Zeros between significant digits are significant.
                            for _ in 0..trailing_zeros {
                                *digits.get_mut(len)? = b'0';
                                len += 1;
                            }
                            trailing_zeros = 0;
                            *digits.get_mut(len)? = d;
                            len += 1;
                        }
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            i += 1;
        }
        if !seen_digit {
            return None;
        }
        let mut exponent: i64 = 0;
        if i < b.len() {
            if !matches!(b[i], b'e' | b'E') {
                return None;
            }
            let rest = &s[i + 1..];
            let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            exponent = rest.parse::<i64>().ok()?;
        }
        let power = if int_digits > 0 { int_digits - 1 } else { -leading_frac_zeros - 1 };
        Some(Self { negative, power: power.checked_add(exponent)?, digits, len: len as u8 })
    }

    fn is_zero(&self) -> bool {
        self.len == 0
    }

    /// Digits from the first to the last non-zero one (0 for zero).
    pub fn significant_digits(&self) -> usize {
        usize::from(self.len)
    }

    fn significant(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }

    fn cmp_magnitude(&self, other: &Self) -> std::cmp::Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            // No trailing zeros: "12" < "123" is 1.2 < 1.23.
            (false, false) => {
                self.power.cmp(&other.power).then_with(|| self.significant().cmp(other.significant()))
            }
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let sign = |d: &Self| {
            if d.is_zero() {
                0
            } else if d.negative {
                -1
            } else {
                1
            }
        };
        match sign(self).cmp(&sign(other)) {
            std::cmp::Ordering::Equal if sign(self) < 0 => other.cmp_magnitude(self),
            std::cmp::Ordering::Equal => self.cmp_magnitude(other),
            unequal => unequal,
        }
    }
}

/// The index just past the string that starts at `start` (a `"`).
fn skip_string(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn number_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
        i += 1;
    }
    i
}

/// Whether serde_json would change the literal's digits: an integer that fits 64 bits is kept
/// exactly; anything else goes through an `f64`, exact only up to 15 significant digits.
fn changes_through_f64(literal: &[u8]) -> bool {
    if !is_json_number(literal) {
        return false; // left for the parser to refuse
    }
    let Ok(text) = std::str::from_utf8(literal) else { return false };
    if !text.contains(['.', 'e', 'E']) && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()) {
        return false;
    }
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    digits.trim_start_matches('0').trim_end_matches('0').len() > 15
}

/// RFC 8259's `number`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(b: &[u8]) -> bool {
    let digits = |i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match digits(i) {
        0 => return false,
        n if n > 1 && b[i] == b'0' => return false,
        n => i += n,
    }
    if b.get(i) == Some(&b'.') {
        match digits(i + 1) {
            0 => return false,
            n => i += 1 + n,
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        match digits(i) {
            0 => return false,
            n => i += n,
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Value {
        serde_json::from_slice(&protect_numbers(body.as_bytes())).unwrap()
    }

    #[test]
    fn json_text_writes_protected_numbers_back_as_sent() {
        let body = r#"{"a":[1.2345678901234567890123456789012345678,12.5,"x"],"b":{"c":true,"d":null}}"#;
        assert_eq!(to_json_text(&parsed(body)), body);
    }

    #[test]
    fn long_numbers_keep_every_digit_and_others_are_untouched() {
        let body = r#"{"a": 1.2345678901234567890123456789012345678, "b": 12.5, "c": -7,
                       "d": 123456789012345678901234567890, "e": "9.99999999999999999999",
                       "f": [1e5, -0.00000000000000000012345678901234567], "g\"1.1111111111111111111": 2}"#;
        let v = parsed(body);
        assert_eq!(number_text(&v["a"]).unwrap(), "1.2345678901234567890123456789012345678");
        assert_eq!(number_text(&v["d"]).unwrap(), "123456789012345678901234567890");
        assert_eq!(number_text(&v["f"][1]).unwrap(), "-0.00000000000000000012345678901234567");
        assert_eq!(v["b"], serde_json::json!(12.5), "short numbers stay JSON numbers");
        assert_eq!(v["c"], -7);
        assert_eq!(v["f"][0], serde_json::json!(1e5));
        assert_eq!(v["e"], "9.99999999999999999999", "numbers inside strings are text");
        assert_eq!(v["g\"1.1111111111111111111"], 2, "escaped quotes do not end a string");
        assert!(number_text(&v["e"]).is_none());
        assert!(is_number(&v["a"]) && is_number(&v["b"]) && !is_number(&v["e"]));
    }

    #[test]
    fn a_body_without_long_numbers_is_not_copied_and_bad_json_stays_bad() {
        let body = br#"{"a": 1.5, "b": 18446744073709551615, "c": -9223372036854775808}"#;
        assert!(matches!(protect_numbers(body), Cow::Borrowed(_)));
        for bad in [&br#"{"a": 1.23456789012345678901"#[..], b"[1.11111111111111111111", b"\"abc", b"-"] {
            let _ = protect_numbers(bad); // no panic; the parser reports what is wrong
        }
        assert!(serde_json::from_slice::<Value>(&protect_numbers(b"[1.11111111111111111111")).is_err());
    }

    #[test]
    fn fifteen_significant_digits_survive_an_f64_and_sixteen_may_not() {
        assert!(!changes_through_f64(b"123456789012345"));
        assert!(!changes_through_f64(b"1.23456789012345"));
        assert!(!changes_through_f64(b"0.000123456789012345e10"));
        assert!(!changes_through_f64(b"100000000000000000000000000"));
        assert!(changes_through_f64(b"1.234567890123456"));
        assert!(changes_through_f64(b"18446744073709551616"));
        assert!(changes_through_f64(b"-9223372036854775809"));
        // Not JSON numbers: left for the parser to refuse.
        for bad in
            [&b"1.2345678901234567890123e"[..], b"--12345678901234567", b"01234567890123456789", b"1.e5"]
        {
            assert!(!changes_through_f64(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(serde_json::from_slice::<Value>(&protect_numbers(b"[1.2345678901234567890123e]")).is_err());
    }

    #[test]
    fn decimals_compare_every_digit() {
        let d = |s: &str| Decimal::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(d("1.50"), d("1.5"));
        assert_eq!(d("-0"), d("0.000"));
        assert_eq!(d("1e3"), d("1000"));
        assert_eq!(d("0.00123"), d("1.23E-3"));
        assert_eq!(d("100.0"), d("1e2"));
        assert_eq!(d("10203"), d("1.0203e4"));
        assert!(d("12345678901234567890123456789012345678") < d("12345678901234567890123456789012345679"));
        assert!(
            d("0.12345678901234567890123456789012345678") > d("0.12345678901234567890123456789012345677")
        );
        assert!(d("-2") < d("-1.9999999999999999999999999999999999999"));
        assert!(d("-0.5") < d("0") && d("0") < d("1e-130"));
        assert!(d("9.9") < d("10") && d("99") == d("9.9e1"));
        assert!(d("1.2") < d("1.23") && d("-1.2") > d("-1.23"));
        assert_eq!(
            (
                d("0.0012300").significant_digits(),
                d("1002").significant_digits(),
                d("-0").significant_digits()
            ),
            (3, 4, 0)
        );
        for bad in ["", "-", ".", "1e", "1e+", "abc", "1.2.3", "1 ", "0x10", &"1".repeat(41)] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?}");
        }
    }
}
