//! `hpn_registry::challenge::parse_www_authenticate`, the parser of a header every registry
//! (and anything pretending to be one) sends: it ends, never panics, gives sane schemes, and
//! what it read can be written back as a well-formed header that reads the same.

use hpn_registry::challenge::{self, Challenge};

/// The parameters hpn reads, and a few more registries send.
const PARAMS: [&str; 6] = ["realm", "service", "scope", "error", "error_description", "charset"];

pub fn check(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let challenges = challenge::parse_www_authenticate(header);
    // Each challenge starts with a scheme token of at least one byte of the header.
    assert!(challenges.len() <= header.len());
    for challenge in &challenges {
        let scheme = challenge.scheme();
        assert!(!scheme.is_empty(), "{header:?} gave an empty scheme");
        assert!(scheme.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase() && !b"\",=;".contains(&b)));
        assert_eq!(challenge.is_bearer(), scheme == "bearer");
        assert_eq!(challenge.is_basic(), scheme == "basic");
        for name in PARAMS {
            assert_eq!(challenge.param(name), challenge.param(&name.to_ascii_uppercase()));
        }
    }
    if let Some(preferred) = challenge::preferred(&challenges) {
        assert!(preferred.is_bearer() || preferred.is_basic());
        assert!(preferred.is_bearer() || !challenges.iter().any(Challenge::is_bearer));
    }

    // Written back with quoted values, the challenges read the same.
    let rendered = challenges.iter().map(render).collect::<Vec<_>>().join(", ");
    let again = challenge::parse_www_authenticate(&rendered);
    assert_eq!(again.len(), challenges.len(), "{header:?} was read as {rendered:?}, which reads differently");
    for (first, second) in challenges.iter().zip(&again) {
        assert_eq!(first.scheme(), second.scheme(), "{header:?} was read as {rendered:?}");
        for name in PARAMS {
            assert_eq!(first.param(name), second.param(name), "{header:?} was read as {rendered:?}");
        }
    }
}

fn render(challenge: &Challenge) -> String {
    let mut text = challenge.scheme().to_owned();
    let mut separator = " ";
    for name in PARAMS {
        if let Some(value) = challenge.param(name) {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!("{separator}{name}=\"{escaped}\""));
            separator = ",";
        }
    }
    text
}
