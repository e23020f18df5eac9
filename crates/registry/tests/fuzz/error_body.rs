//! `hpn_registry::ErrorBody::parse`, the reader of what a registry, a token service, a proxy or
//! object storage puts in the body of an error answer, which hpn quotes in its messages: it never
//! panics, and what it gives to print is short and free of control characters, so a hostile
//! server cannot flood a terminal or send it escape sequences.

use hpn_registry::ErrorBody;

/// `ErrorBody`'s display limit in characters, and the ellipsis that marks a cut.
const MAX_CHARS: usize = 301;

pub fn check(data: &[u8]) {
    let body = ErrorBody::parse(data);
    let text = body.to_string();
    assert!(text.chars().count() <= MAX_CHARS, "{} characters to print", text.chars().count());
    assert!(!text.chars().any(char::is_control), "control characters to print: {text:?}");
    for entry in &body.errors {
        assert!(body.has(&entry.code), "an entry's code {:?} is not found by has()", entry.code);
    }
    assert_eq!(ErrorBody::parse(data), body, "parsing the same bytes twice differs");
}
