//! Where an alert may go. A channel's URL is checked when it is added and again before every
//! delivery (a name may resolve elsewhere later): `https` only, and never an address inside the
//! service's network: loopback, private, link-local (the cloud metadata server at
//! 169.254.169.254 among them), unique-local, unspecified, multicast or broadcast.
//! `NOTIFY_ALLOW_LOCAL_TARGETS` (development only) lets http and loopback or private addresses
//! through, for local receivers; link-local and metadata addresses stay refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// How long a host's resolution may take.
const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Why a URL may not receive alerts (shown to the caller: it names no resolved address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url: expected an absolute https URL without credentials")]
    Malformed,
    #[error("url: https is required")]
    NotHttps,
    #[error("url: the host does not resolve")]
    Unresolved,
    #[error("url: the host resolves to an address alerts may not reach (internal or metadata)")]
    Internal,
}

/// A URL as given, parsed and checked for its form (not yet resolved).
pub fn parse(raw: &str, allow_local: bool) -> Result<Url, TargetError> {
    if raw.len() > 2048 || raw.chars().any(char::is_control) {
        return Err(TargetError::Malformed);
    }
    let url = Url::parse(raw).map_err(|_| TargetError::Malformed)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        "http" => return Err(TargetError::NotHttps),
        _ => return Err(TargetError::Malformed),
    }
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(TargetError::Malformed);
    }
    Ok(url)
}

/// What the API shows of a URL: its scheme and host (a path or query may hold a secret, as a
/// Slack webhook's does).
pub fn hint(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
}

/// Resolves the URL's host and refuses it if any address it resolves to is internal.
pub async fn check(url: &Url, allow_local: bool) -> Result<(), TargetError> {
    let host = url.host_str().ok_or(TargetError::Malformed)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        // A resolver that does not answer within 3 s is as good as none.
        Err(_) => tokio::time::timeout(RESOLVE_WITHIN, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| TargetError::Unresolved)?
            .map_err(|_| TargetError::Unresolved)?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(TargetError::Unresolved);
    }
    if addrs.iter().any(|ip| refused(*ip, allow_local)) {
        return Err(TargetError::Internal);
    }
    Ok(())
}

/// An address alerts may not reach.
pub fn refused(ip: IpAddr, allow_local: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4, allow_local),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4, allow_local),
            None => refused_v6(v6, allow_local),
        },
    }
}

fn refused_v4(ip: Ipv4Addr, allow_local: bool) -> bool {
    let [a, b, ..] = ip.octets();
    // Never: link-local (metadata), unspecified, multicast, broadcast, documentation, 0/8,
    // carrier-grade NAT (100.64/10) and the benchmark range.
    if ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
    {
        return true;
    }
    (ip.is_loopback() || ip.is_private()) && !allow_local
}

fn refused_v6(ip: Ipv6Addr, allow_local: bool) -> bool {
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let unique_local = first & 0xfe00 == 0xfc00;
    if link_local || ip.is_unspecified() || ip.is_multicast() {
        return true;
    }
    (ip.is_loopback() || unique_local) && !allow_local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_metadata_addresses_are_refused_and_public_ones_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(refused(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!refused(ip.parse().unwrap(), false), "{ip}");
        }
        // Local receivers (development): loopback and private pass, metadata never.
        assert!(!refused("127.0.0.1".parse().unwrap(), true));
        assert!(!refused("10.0.0.5".parse().unwrap(), true));
        assert!(refused("169.254.169.254".parse().unwrap(), true));
        assert!(refused("::ffff:169.254.169.254".parse().unwrap(), true));
    }

    #[test]
    fn only_https_urls_without_credentials_are_accepted() {
        assert!(parse("https://hooks.example.com/a?b=c", false).is_ok());
        assert_eq!(
            parse("http://hooks.example.com/a", false),
            Err(TargetError::NotHttps)
        );
        assert!(parse("http://127.0.0.1:9/a", true).is_ok());
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
            "https://",
            "file:///etc/passwd",
        ] {
            assert_eq!(parse(bad, true), Err(TargetError::Malformed), "{bad}");
        }
        let url = parse("https://hooks.slack.com/services/T0/B0/secret", false).unwrap();
        assert_eq!(hint(&url), "https://hooks.slack.com");
    }

    #[tokio::test]
    async fn a_literal_internal_address_is_refused_without_a_lookup() {
        let metadata = parse("https://169.254.169.254/latest", false).unwrap();
        assert_eq!(check(&metadata, false).await, Err(TargetError::Internal));
        let loopback = parse("https://127.0.0.1:8443/hook", false).unwrap();
        assert_eq!(check(&loopback, false).await, Err(TargetError::Internal));
        assert_eq!(check(&loopback, true).await, Ok(()));
        let v6 = parse("https://[::1]/hook", false).unwrap();
        assert_eq!(check(&v6, false).await, Err(TargetError::Internal));
    }
}
