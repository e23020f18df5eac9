//! A token endpoint for a token-auth [`Registry`](crate::Registry): the `realm` its challenges
//! send clients to. It checks one user's Basic credentials and grants what each requested scope
//! asks for, signed by a [`TokenSigner`] the registry trusts; anonymous requests get a token
//! with no access (as Docker Hub answers for a private repository), wrong credentials a 401.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{Context, Result};

use crate::TokenSigner;
use crate::http::basic_authorization;

/// A running token endpoint on loopback; stopped on drop.
#[derive(Debug)]
pub struct TokenService {
    addr: String,
    stop: Arc<AtomicBool>,
    scopes: Arc<Mutex<Vec<String>>>,
}

impl TokenService {
    /// Serves tokens for `user`:`password` at [`Self::realm`].
    pub fn start(signer: Arc<TokenSigner>, user: &str, password: &str) -> Result<TokenService> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the token endpoint")?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let scopes = Arc::new(Mutex::new(Vec::new()));
        let expected = basic_authorization(user, password);
        let (thread_stop, thread_scopes) = (Arc::clone(&stop), Arc::clone(&scopes));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &signer, &expected, &thread_scopes);
                }
            }
        });
        Ok(TokenService { addr, stop, scopes })
    }

    /// The URL to give [`RegistryBuilder::token_auth`](crate::RegistryBuilder::token_auth).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Every scope requested so far, as clients spelled them (`repository:a/b:pull,push`).
    pub fn requested_scopes(&self) -> Vec<String> {
        self.scopes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn answer(stream: TcpStream, signer: &TokenSigner, expected: &str, scopes: &Mutex<Vec<String>>) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let target = request_line.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let query = target.split_once('?').map(|(_, query)| query).unwrap_or_default();
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (percent_decode(key), percent_decode(value)))
        .collect();
    let service = params.iter().find(|(key, _)| key == "service").map(|(_, value)| value.as_str());
    let (status, body) = if service != Some(TokenSigner::SERVICE) {
        (400, r#"{"details":"wrong service"}"#.to_owned())
    } else if authorization.as_deref().is_some_and(|given| given != expected) {
        (401, r#"{"details":"incorrect username or password"}"#.to_owned())
    } else {
        let requested: Vec<String> =
            params.iter().filter(|(key, _)| key == "scope").map(|(_, value)| value.clone()).collect();
        scopes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(requested.iter().cloned());
        let access: Vec<(String, String, Vec<String>)> = if authorization.is_some() {
            requested.iter().filter_map(|scope| granted(scope)).collect()
        } else {
            Vec::new()
        };
        let token = signer.token_for_resources(&access, 300);
        (200, serde_json::json!({"token": token, "expires_in": 300}).to_string())
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Bad Request",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    Ok(())
}

/// `TYPE:NAME:ACTIONS` (the name may hold colons: `registry:catalog:*` has none, a repository
/// on a registry with a port has none either, as names exclude the host).
fn granted(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((kind.to_owned(), name.to_owned(), actions.split(',').map(str::to_owned).collect()))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_queries_decode() {
        assert_eq!(percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"), "repository:a/b:pull,push");
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(
            granted("repository:team/app:pull,push"),
            Some(("repository".into(), "team/app".into(), vec!["pull".into(), "push".into()]))
        );
        assert_eq!(granted("registry:catalog:*"), Some(("registry".into(), "catalog".into(), vec!["*".into()])));
    }
}
