//! Which host and scheme a registry name is spoken to at.

use std::net::IpAddr;

use hpn_oci::DOCKER_HUB_REGISTRY;

/// Docker Hub's API lives on another host than its name.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// HTTPS with the system's roots.
    Https,
    /// Loopback registries, as Docker does without any flag: HTTPS first
    /// (verified: a local registry with a trusted CA gets TLS), then plain
    /// HTTP. Never through a proxy.
    Loopback,
    /// Named insecure by the user: HTTPS without verification, then plain HTTP.
    Insecure,
}

/// The `host[:port]` the API requests go to.
pub(crate) fn api_host(registry: &str) -> &str {
    if is_docker_hub(registry) { DOCKER_HUB_API_HOST } else { registry }
}

pub(crate) fn is_docker_hub(registry: &str) -> bool {
    matches!(registry, DOCKER_HUB_REGISTRY | "index.docker.io" | "registry-1.docker.io")
}

pub(crate) fn endpoint(registry: &str, insecure_registries: &[String], tls_verify: bool) -> Endpoint {
    if !tls_verify || is_listed_insecure(registry, insecure_registries) {
        Endpoint::Insecure
    } else if is_loopback(registry) {
        Endpoint::Loopback
    } else {
        Endpoint::Https
    }
}

/// `host` without the port; IPv6 literals lose their brackets.
pub(crate) fn host_part(registry: &str) -> &str {
    if let Some(bracketed) = registry.strip_prefix('[') {
        return bracketed.split_once(']').map_or(bracketed, |(host, _)| host);
    }
    match registry.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 literal.
        Some((host, _)) if !host.contains(':') => host,
        _ => registry,
    }
}

pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = host_part(registry);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|address| address.is_loopback())
}

fn is_listed_insecure(registry: &str, insecure_registries: &[String]) -> bool {
    let registry = registry.to_ascii_lowercase();
    insecure_registries.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        let entry = entry.strip_prefix("https://").or_else(|| entry.strip_prefix("http://")).unwrap_or(&entry);
        let entry = entry.trim_end_matches('/');
        // An entry without a port stands for the host on any port.
        entry == registry || (host_part(entry) == entry && host_part(&registry) == entry)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_maps_to_its_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
        assert_eq!(api_host("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn loopback_hosts_with_any_port_are_loopback_endpoints() {
        for name in
            ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80", "[::1]:5000", "[::1]"]
        {
            assert_eq!(endpoint(name, &[], true), Endpoint::Loopback, "{name}");
        }
        for name in ["example.com", "10.0.0.1:5000", "localhost.example.com", "[::2]:5000", "docker.io"] {
            assert_eq!(endpoint(name, &[], true), Endpoint::Https, "{name}");
        }
    }

    #[test]
    fn insecure_entries_match_exactly_or_by_host() {
        let list = vec!["reg.lan:5000".to_owned(), "http://other.lan/".to_owned(), "127.0.0.1:9".to_owned()];
        assert_eq!(endpoint("reg.lan:5000", &list, true), Endpoint::Insecure);
        assert_eq!(endpoint("reg.lan:5001", &list, true), Endpoint::Https);
        assert_eq!(endpoint("reg.lan", &list, true), Endpoint::Https);
        assert_eq!(endpoint("other.lan", &list, true), Endpoint::Insecure);
        assert_eq!(endpoint("other.lan:8443", &list, true), Endpoint::Insecure);
        assert_eq!(endpoint("127.0.0.1:9", &list, true), Endpoint::Insecure);
        assert_eq!(endpoint("example.com", &[], false), Endpoint::Insecure, "--tls-verify=false");
    }

    #[test]
    fn host_part_handles_ports_and_ipv6() {
        assert_eq!(host_part("a.b:5000"), "a.b");
        assert_eq!(host_part("[::1]:5000"), "::1");
        assert_eq!(host_part("::1"), "::1");
        assert_eq!(host_part("a.b"), "a.b");
    }
}
