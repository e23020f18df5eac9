//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1), as registries send them.
//!
//! One header may hold several challenges separated by commas, and parameter
//! values may be quoted strings containing commas and escaped quotes
//! (`scope="repository:a:pull,push"`), so splitting on commas is not enough.

use std::collections::BTreeMap;

/// One challenge: a scheme (lowercased) and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    params: BTreeMap<String, String>,
}

impl Challenge {
    /// The scheme, lowercased: `bearer`, `basic`, ...
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// A parameter by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// A `Bearer` challenge: a token is to be fetched from its realm.
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// A `Basic` challenge: credentials go in every request.
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parses one `WWW-Authenticate` header value into its challenges. Malformed
/// parts are skipped rather than failing the whole header: a registry that
/// adds an odd extension must not break the challenges it also offers.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut cursor = Cursor { bytes: value.as_bytes(), at: 0 };
    let mut challenges = Vec::new();
    loop {
        cursor.skip_separators();
        if cursor.at_end() {
            break;
        }
        let Some(scheme) = cursor.token() else {
            // Not a scheme: skip to the next comma and try again.
            cursor.skip_until_comma();
            continue;
        };
        let mut challenge = Challenge { scheme: scheme.to_ascii_lowercase(), params: BTreeMap::new() };
        cursor.parse_params(&mut challenge.params);
        challenges.push(challenge);
    }
    challenges
}

/// The challenge hpn answers when a registry offers several: Bearer, else Basic.
pub fn preferred(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges.iter().find(|c| c.is_bearer()).or_else(|| challenges.iter().find(|c| c.is_basic()))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.at += 1;
        }
    }

    fn skip_until_comma(&mut self) {
        while let Some(byte) = self.peek() {
            self.at += 1;
            if byte == b',' {
                break;
            }
        }
    }

    /// An RFC 9110 token: one or more tchars.
    fn token(&mut self) -> Option<String> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned())
    }

    /// A quoted string starting at the opening quote; backslash escapes the
    /// next byte. An unterminated string runs to the end of the header.
    fn quoted(&mut self) -> String {
        self.at += 1;
        let mut value = Vec::new();
        while let Some(byte) = self.peek() {
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.at += 1;
                    }
                }
                other => value.push(other),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }

    /// `name=value` pairs until the next challenge's scheme or the end. A token
    /// not followed by `=` starts the next challenge.
    fn parse_params(&mut self, params: &mut BTreeMap<String, String>) {
        loop {
            self.skip_separators();
            let before_name = self.at;
            let Some(name) = self.token() else {
                if !self.at_end() {
                    // Garbage where a parameter should be: drop it up to the next comma.
                    self.skip_until_comma();
                    continue;
                }
                return;
            };
            self.skip_whitespace();
            if self.peek() != Some(b'=') {
                self.at = before_name;
                return;
            }
            self.at += 1;
            self.skip_whitespace();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                // token68-style padding (`abc==`) stays part of the value.
                let mut value = self.token().unwrap_or_default();
                while self.peek() == Some(b'=') {
                    value.push('=');
                    self.at += 1;
                }
                value
            };
            // The first occurrence wins, as a repeated parameter is invalid anyway.
            params.entry(name.to_ascii_lowercase()).or_insert(value);
        }
    }
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(value: &str) -> Challenge {
        let mut challenges = parse_www_authenticate(value);
        assert_eq!(challenges.len(), 1, "{value}: {challenges:?}");
        challenges.remove(0)
    }

    #[test]
    fn docker_hub_bearer_challenge() {
        let challenge = single(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert!(challenge.is_bearer());
        assert_eq!(challenge.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(challenge.param("Service"), Some("registry.docker.io"));
        assert_eq!(challenge.param("scope"), Some("repository:library/nginx:pull"));
    }

    #[test]
    fn quoted_commas_and_escaped_quotes_stay_in_values() {
        let challenge = single(
            r#"Bearer realm="https://r.example/token" , scope="repository:a/b:pull,push", error="insufficient_scope", note="say \"hi\", ok""#,
        );
        assert_eq!(challenge.param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(challenge.param("error"), Some("insufficient_scope"));
        assert_eq!(challenge.param("note"), Some(r#"say "hi", ok"#));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let challenges = parse_www_authenticate(
            r#"Basic realm="Registry Realm", Bearer realm="https://auth.example/token",service=svc, Negotiate"#,
        );
        let schemes: Vec<_> = challenges.iter().map(Challenge::scheme).collect();
        assert_eq!(schemes, ["basic", "bearer", "negotiate"]);
        assert_eq!(challenges[0].param("realm"), Some("Registry Realm"));
        assert_eq!(challenges[1].param("service"), Some("svc"));
        assert_eq!(preferred(&challenges).unwrap().scheme(), "bearer");
        assert_eq!(preferred(&challenges[..1]).unwrap().scheme(), "basic");
        assert!(preferred(&challenges[2..]).is_none());
    }

    #[test]
    fn unquoted_values_case_and_whitespace() {
        let challenge = single("BASIC   Realm = harbor ,charset=UTF-8");
        assert!(challenge.is_basic());
        assert_eq!(challenge.param("realm"), Some("harbor"));
        assert_eq!(challenge.param("charset"), Some("UTF-8"));
    }

    #[test]
    fn garbage_does_not_panic_or_loop() {
        for value in ["", ",,,", "=", "\"", "Bearer realm=\"unterminated", "Bearer =x, realm=y", "@@ Basic", "a=b=c"] {
            let _ = parse_www_authenticate(value);
        }
        let challenges = parse_www_authenticate("Bearer =x, realm=y");
        assert_eq!(challenges[0].param("realm"), Some("y"));
        assert_eq!(single("Bearer realm=\"unterminated").param("realm"), Some("unterminated"));
        assert_eq!(parse_www_authenticate("@@ , Basic realm=x")[0].scheme(), "basic");
    }

    #[test]
    fn token68_padding_is_kept() {
        let challenge = single("Newauth abc=def==");
        assert_eq!(challenge.param("abc"), Some("def=="));
    }
}
