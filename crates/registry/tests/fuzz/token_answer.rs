//! `hpn_registry::token::TokenAnswer::parse`, the reader of a token service's answer (a server
//! hpn does not control, reached through a realm the registry names): it never panics, a token
//! it returns is a non-empty string of the answer, its lifetime stays within the clamp whatever
//! `expires_in` claims, and neither its `Debug` nor an error's message quotes the body.

use hpn_registry::token::{MAX_LIFETIME, MIN_LIFETIME, TokenAnswer};

pub fn check(data: &[u8]) {
    match TokenAnswer::parse(data) {
        Ok(answer) => {
            let lifetime = answer.lifetime();
            assert!((MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime), "lifetime {lifetime:?} out of the clamp");
            let debug = format!("{answer:?}");
            let token = answer.into_token();
            assert!(!token.is_empty(), "an empty token was accepted");
            // A token longer than the whole Debug text cannot be in it by chance.
            assert!(token.len() <= debug.len() || !debug.contains(&token), "Debug shows the token: {debug}");
        }
        Err(error) => {
            let message = error.to_string();
            // What the body says stays out of the message (it may be a token): any run of
            // 12 or more letters of the body would show through here.
            let text = String::from_utf8_lossy(data);
            for word in text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|word| word.len() >= 12) {
                assert!(!message.contains(word), "the error {message:?} quotes the body's {word:?}");
            }
        }
    }
}
