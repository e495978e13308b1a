//! The question, typed: `--from`/`--to` endpoints and the `--port`
//! argument, parsed from their command-line spelling.

use std::net::IpAddr;
use std::str::FromStr;

use crate::core::model::{Family, ObjectRef, Protocol};

/// One end of the flow, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `NS/POD`.
    Pod(ObjectRef),
    /// An address: a pod's IP resolves to that pod; any other address is not a pod.
    Ip(IpAddr),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Endpoint::Ip(ip));
        }
        if crate::core::model::Cidr::parse(s).is_ok() {
            return Err(format!(
                "{s:?} is a CIDR; a flow endpoint is NAMESPACE/POD or one IP address"
            ));
        }
        // Namespace names are DNS labels: lower-case letters, digits and '-'.
        let dns_label = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        match s.split_once('/') {
            Some((ns, pod)) if dns_label(ns) && !pod.is_empty() && !pod.contains('/') => {
                Ok(Endpoint::Pod(ObjectRef::new(ns, pod)))
            }
            _ => Err(format!("{s:?} is neither NAMESPACE/POD nor an IP address")),
        }
    }
}

/// The destination port as given: a number or the name of a container port
/// of the destination pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A port number.
    Number(u16),
    /// A named container port of the destination pod.
    Named(String),
}

/// `--port N[/PROTO]` or `--port NAME[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortArg {
    /// Number or name.
    pub port: PortSpec,
    /// Protocol, if given (a number defaults to TCP; a name takes the
    /// protocol the container port declares).
    pub protocol: Option<Protocol>,
}

impl FromStr for PortArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, proto) = match s.split_once('/') {
            Some((p, proto)) => (p, Some(proto)),
            None => (s, None),
        };
        let protocol = match proto {
            None => None,
            Some(p) => Some(Protocol::parse(&p.to_ascii_uppercase()).ok_or_else(|| {
                format!("{s:?}: unknown protocol {p:?} (expected TCP, UDP or SCTP)")
            })?),
        };
        let port = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            match port.parse::<u16>() {
                Ok(n) if n > 0 => PortSpec::Number(n),
                _ => {
                    return Err(format!(
                        "{s:?}: {port} is not a valid port number (1-65535)"
                    ));
                }
            }
        } else {
            crate::core::k8s::convert::validate_port_name(port)
                .map_err(|why| format!("{s:?}: not a port number or a valid port name: {why}"))?;
            PortSpec::Named(port.to_string())
        };
        Ok(PortArg { port, protocol })
    }
}

/// What to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Source.
    pub from: Endpoint,
    /// Destination.
    pub to: Endpoint,
    /// Destination port.
    pub port: PortArg,
    /// Address family when both ends are pods (default: IPv4 if both have
    /// an IPv4 address, else IPv6).
    pub family: Option<Family>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let table: &[(&str, Option<Endpoint>, &str)] = &[
            (
                "x/a",
                Some(Endpoint::Pod(ObjectRef::new("x", "a"))),
                "NS/POD",
            ),
            (
                "10.0.0.1",
                Some(Endpoint::Ip("10.0.0.1".parse().unwrap())),
                "IPv4",
            ),
            (
                "fd00::1",
                Some(Endpoint::Ip("fd00::1".parse().unwrap())),
                "IPv6",
            ),
            ("10.0.0.0/24", None, "a CIDR is not an endpoint"),
            ("a", None, "a bare name has no namespace"),
            ("/a", None, "empty namespace"),
            ("x/", None, "empty pod"),
            ("x/a/b", None, "too many parts"),
            ("1.2.3.4/a", None, "not a namespace name"),
            ("X/a", None, "namespace names are lower case"),
            (
                "kube-system/coredns-5d78c9869d-abcde",
                Some(Endpoint::Pod(ObjectRef::new(
                    "kube-system",
                    "coredns-5d78c9869d-abcde",
                ))),
                "a real pod name",
            ),
        ];
        for (s, want, why) in table {
            assert_eq!(s.parse::<Endpoint>().ok(), *want, "{s}: {why}");
        }
    }

    #[test]
    fn ports_parse() {
        let num = |n, p| {
            Some(PortArg {
                port: PortSpec::Number(n),
                protocol: p,
            })
        };
        let table: &[(&str, Option<PortArg>, &str)] = &[
            ("80", num(80, None), "number, protocol left to default"),
            (
                "53/udp",
                num(53, Some(Protocol::Udp)),
                "lower-case protocol",
            ),
            (
                "53/SCTP",
                num(53, Some(Protocol::Sctp)),
                "upper-case protocol",
            ),
            (
                "http",
                Some(PortArg {
                    port: PortSpec::Named("http".into()),
                    protocol: None,
                }),
                "a name",
            ),
            ("0", None, "port 0"),
            ("70000", None, "beyond 65535"),
            ("80/icmp", None, "unknown protocol"),
            ("Bad_Name", None, "invalid port name"),
            ("", None, "empty"),
        ];
        for (s, want, why) in table {
            assert_eq!(s.parse::<PortArg>().ok(), *want, "{s}: {why}");
        }
    }
}
