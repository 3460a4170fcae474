//! Certificates and TLS (CT-1, CT-2): the node's self-signed certificate in its data directory, a
//! server certificate that can be replaced without a restart, and client configurations that trust
//! a server only by its pinned SHA-256 fingerprint. Host names are never checked: the pin is the
//! identity. Every link (agent–server, server–server, admin API) uses these configs.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, ServerConfig, SignatureScheme,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::fsutil;

pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// ALPN for the agent–server and server–server wire protocol (length-prefixed JSON frames).
pub const ALPN_WIRE: &str = "understudy/1";
/// ALPN for the admin API (HTTP/1.1).
pub const ALPN_HTTP: &str = "http/1.1";

/// How long [`connect`] waits for the TCP connection and the TLS handshake together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pinning makes expiry meaningless, so the certificate is valid for long enough never to matter.
const VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {doing}: {source}")]
    Io {
        path: PathBuf,
        doing: &'static str,
        source: io::Error,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{doing}: {source}")]
    Rustls {
        doing: &'static str,
        source: rustls::Error,
    },
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connecting to {addr}: no TLS session within {}s", after.as_secs_f32())]
    Timeout { addr: String, after: Duration },
    #[error("connecting to {addr}: {refused}")]
    NotPinned { addr: String, refused: NotPinned },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: io::Error },
}

/// The refusal of a server certificate that is not pinned. It carries the presented fingerprint so
/// the operator can be shown it and accept it on first contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPinned {
    pub presented: String,
    pub expected: Vec<String>,
}

impl fmt::Display for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = if self.expected.is_empty() {
            "none pinned yet".to_string()
        } else {
            self.expected.join(", ")
        };
        write!(
            f,
            "server certificate fingerprint {} is not pinned (expected one of: {expected})",
            self.presented
        )
    }
}

impl std::error::Error for NotPinned {}

impl NotPinned {
    /// Finds the refusal inside an error returned by a tokio-rustls handshake, if that is why it
    /// failed.
    pub fn from_io(err: &io::Error) -> Option<NotPinned> {
        let rustls_err = err.get_ref()?.downcast_ref::<rustls::Error>()?;
        match rustls_err {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<NotPinned>().cloned()
            }
            _ => None,
        }
    }
}

/// What `cert show` prints about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Lowercase hex SHA-256 of the DER certificate.
    pub fingerprint: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// Subject alternative names: IP addresses and DNS names.
    pub sans: Vec<String>,
    /// The certificate file.
    pub path: PathBuf,
}

/// Lowercase hex SHA-256 of a DER certificate: the identity every pin compares against.
pub fn fingerprint_of(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_err(doing: &'static str) -> impl FnOnce(rustls::Error) -> TlsError {
    move |source| TlsError::Rustls { doing, source }
}

/// Generates a new self-signed certificate for this machine and writes `cert.pem` and `key.pem`
/// into `data_dir` (the key readable only by its owner). Its subject alternative names are every
/// IP address of the machine (loopback included), its host name, `localhost`, and the extras.
pub fn generate_certificate(
    data_dir: &Path,
    extra_ips: &[IpAddr],
    extra_dns: &[String],
) -> Result<CertInfo, TlsError> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map_err(|source| TlsError::Io {
            path: data_dir.to_path_buf(),
            doing: "listing this machine's IP addresses",
            source,
        })?
        .into_iter()
        .map(|i| i.ip())
        .collect();
    ips.extend_from_slice(extra_ips);
    let mut names: Vec<String> = Vec::new();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // A host name that is not a valid DNS name would make rcgen refuse the whole certificate.
    if !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
    {
        names.push(host);
    }
    names.push("localhost".to_string());
    names.extend(extra_dns.iter().cloned());

    let mut sans: Vec<String> = Vec::new();
    for san in ips.iter().map(|ip| ip.to_string()).chain(names) {
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    let mut params = rcgen::CertificateParams::new(sans)?;
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for peers whose clock is behind.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Understudy node");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;

    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    // Key first: a reload between the two renames sees a mismatched pair and keeps the old one
    // (CertifiedKey::from_der checks), rather than serving a cert whose key it does not have.
    fsutil::write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(|source| {
        TlsError::Io {
            path: key_path.clone(),
            doing: "writing the private key",
            source,
        }
    })?;
    fsutil::write_atomic(&cert_path, cert.pem().as_bytes(), 0o644).map_err(|source| {
        TlsError::Io {
            path: cert_path.clone(),
            doing: "writing the certificate",
            source,
        }
    })?;
    tracing::info!(path = %cert_path.display(), "generated a new self-signed certificate");
    cert_info(&cert_path, cert.der())
}

/// The certificate in `data_dir`, generating one (with no extra names) if there is none.
pub fn load_or_generate(data_dir: &Path) -> Result<CertInfo, TlsError> {
    let cert_path = data_dir.join(CERT_FILE);
    if cert_path.exists() && data_dir.join(KEY_FILE).exists() {
        let (chain, _) = read_pair(data_dir)?;
        let der = chain.first().ok_or_else(|| TlsError::BadFile {
            path: cert_path.clone(),
            message: "no certificate in the file".into(),
        })?;
        cert_info(&cert_path, der)
    } else {
        generate_certificate(data_dir, &[], &[])
    }
}

fn cert_info(path: &Path, der: &[u8]) -> Result<CertInfo, TlsError> {
    let bad = |message: String| TlsError::BadFile {
        path: path.to_path_buf(),
        message,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let not_after = cert
        .validity()
        .not_after
        .to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(format!("unprintable expiry date: {e}")))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        fingerprint: fingerprint_of(der),
        not_after,
        sans,
        path: path.to_path_buf(),
    })
}

fn read_pair(
    data_dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    let read = |path: &Path, doing| {
        std::fs::read(path).map_err(|source| TlsError::Io {
            path: path.to_path_buf(),
            doing,
            source,
        })
    };
    let cert_pem = read(&cert_path, "reading the certificate")?;
    let key_pem = read(&key_path, "reading the private key")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadFile {
            path: cert_path.clone(),
            message: format!("not a PEM certificate: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::BadFile {
            path: cert_path,
            message: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadFile {
        path: key_path,
        message: format!("not a PEM private key: {e}"),
    })?;
    Ok((chain, key))
}

fn load_certified_key(data_dir: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key) = read_pair(data_dir)?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| TlsError::BadFile {
            path: data_dir.join(KEY_FILE),
            message: format!("the key does not go with {CERT_FILE}: {e}"),
        })
}

/// The node's certificate and key, replaceable at run time: new handshakes use the newest one,
/// established connections keep theirs (CT-2). Serves as the server certificate and as the client
/// certificate the node presents when it connects out.
#[derive(Debug)]
pub struct NodeIdentity {
    current: RwLock<Arc<CertifiedKey>>,
}

impl NodeIdentity {
    /// Loads `cert.pem` and `key.pem` from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Arc<NodeIdentity>, TlsError> {
        Ok(Arc::new(NodeIdentity {
            current: RwLock::new(load_certified_key(data_dir)?),
        }))
    }

    /// Takes the certificate now in `data_dir` into use. On error the old one stays in use.
    pub fn reload(&self, data_dir: &Path) -> Result<String, TlsError> {
        let key = load_certified_key(data_dir)?;
        let fingerprint = fingerprint_of(key.cert.first().map(|c| c.as_ref()).unwrap_or(&[]));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        tracing::info!(%fingerprint, "certificate reloaded");
        Ok(fingerprint)
    }

    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The fingerprint of the certificate new handshakes present.
    pub fn fingerprint(&self) -> String {
        let key = self.certified_key();
        fingerprint_of(key.cert.first().map(|c| c.as_ref()).unwrap_or(&[]))
    }
}

impl ResolvesServerCert for NodeIdentity {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

impl ResolvesClientCert for NodeIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let key = self.certified_key();
        key.key.choose_scheme(sigschemes).map(|_| key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The TLS server configuration for the node's one listening port. ALPN tells the wire protocol
/// (`understudy/1`) from the admin API (`http/1.1`). A client certificate is asked for but not
/// required; if one is sent, the client must prove it holds the key, and its fingerprint (see
/// [`peer_fingerprint`]) is the client's identity, checked by the runtime, not here.
pub fn server_config(identity: Arc<NodeIdentity>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(rustls_err("building the TLS server configuration"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![ALPN_WIRE.into(), ALPN_HTTP.into()];
    Ok(Arc::new(config))
}

/// The fingerprint of the certificate the peer presented, if any. Works on either side:
/// `peer_fingerprint(tls_stream.get_ref().1)`.
pub fn peer_fingerprint(conn: &CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| fingerprint_of(der))
}

/// Accepts any client certificate (identity is decided later, by fingerprint) but still checks
/// the handshake signature, so a client cannot claim a certificate whose key it does not hold.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The set of server fingerprints a client trusts, shared and updatable: a fingerprint accepted on
/// first contact, or a rotated certificate, takes effect for the next handshake.
#[derive(Debug, Clone, Default)]
pub struct Pins(Arc<RwLock<HashSet<String>>>);

impl Pins {
    pub fn new<I: IntoIterator<Item = String>>(fingerprints: I) -> Pins {
        Pins(Arc::new(RwLock::new(
            fingerprints
                .into_iter()
                .map(|f| f.to_ascii_lowercase())
                .collect(),
        )))
    }

    pub fn add(&self, fingerprint: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fingerprint.to_ascii_lowercase());
    }

    pub fn remove(&self, fingerprint: &str) -> bool {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fingerprint.to_ascii_lowercase())
    }

    pub fn contains(&self, fingerprint: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&fingerprint.to_ascii_lowercase())
    }

    /// The pinned fingerprints, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// An agent's server pins, kept per server address (`HOST:PORT` as the agent dials it; issue 12
/// item 2): a certificate pinned for one server is not accepted at another server's address. A
/// rotation announced for an address retires that address's older pins after a grace period;
/// the fingerprint the configuration names for an address retires like any other (it is in use
/// only until a rotation, unless the operator configures another one).
#[derive(Debug, Clone, Default)]
pub struct PinBook(Arc<RwLock<Book>>);

/// One address's pins: fingerprint → when it retires (unix ms), `None` while in use. A retired
/// pin stays listed (never trusted again), so the configuration naming it does not revive it.
type AddressPins = BTreeMap<String, Option<i64>>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    pins: BTreeMap<String, AddressPins>,
    /// The fingerprint the configuration named for each address when it was last seen.
    #[serde(default)]
    configured: BTreeMap<String, String>,
}

impl PinBook {
    /// From what was persisted ([`PinBook::to_json`], or before the configured fingerprints
    /// were kept: the address map alone); anything malformed is left out.
    pub fn from_json(value: &serde_json::Value) -> PinBook {
        let mut book: Book = if value.get("pins").is_some_and(serde_json::Value::is_object) {
            serde_json::from_value(value.clone()).unwrap_or_default()
        } else {
            Book {
                pins: serde_json::from_value(value.clone()).unwrap_or_default(),
                configured: BTreeMap::new(),
            }
        };
        for pins in book.pins.values_mut() {
            *pins = std::mem::take(pins)
                .into_iter()
                .map(|(fp, retire)| (fp.to_ascii_lowercase(), retire))
                .collect();
        }
        for fp in book.configured.values_mut() {
            fp.make_ascii_lowercase();
        }
        PinBook(Arc::new(RwLock::new(book)))
    }

    /// `{"pins": address → fingerprint → when it retires (unix ms), null for a pin in use,
    /// "configured": address → the fingerprint the configuration named}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&*self.0.read().unwrap_or_else(|p| p.into_inner())).unwrap_or_default()
    }

    /// Pins `fingerprint` for `addr` (first contact, a redirect from home): in use.
    pub fn add(&self, addr: &str, fingerprint: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .pins
            .entry(addr.to_string())
            .or_default()
            .insert(fingerprint.to_ascii_lowercase(), None);
    }

    /// The configuration names `fingerprint` for `addr` (`URL#FINGERPRINT`, `failover.peer`).
    /// The same one as before changes nothing: once a rotation retired it, it stays retired. A
    /// fingerprint the book has never seen for `addr` is pinned in use; when the operator
    /// configured another one before, the new one replaces that address's pins (the
    /// operator's word). Returns whether the book changed.
    pub fn configure(&self, addr: &str, fingerprint: &str) -> bool {
        let fingerprint = fingerprint.to_ascii_lowercase();
        let mut book = self.0.write().unwrap_or_else(|p| p.into_inner());
        let before = book
            .configured
            .insert(addr.to_string(), fingerprint.clone());
        let pins = book.pins.entry(addr.to_string()).or_default();
        match before {
            Some(b) if b == fingerprint => false,
            Some(_) => {
                *pins = BTreeMap::from([(fingerprint, None)]);
                true
            }
            None => {
                pins.entry(fingerprint).or_insert(None);
                true
            }
        }
    }

    /// Issue 12: pins learned before they were kept per address (the global `pins` list) apply
    /// to each of `addrs`, the servers the configuration lists, in use.
    pub fn carry_over(&self, learned: &[String], addrs: &[String]) {
        for addr in addrs {
            for fp in learned {
                self.add(addr, fp);
            }
        }
    }

    /// CT-2: the server at `addr` announced `fingerprint`; its other pins retire at
    /// `now_ms + grace`.
    pub fn rotate(&self, addr: &str, fingerprint: &str, now_ms: i64, grace: Duration) {
        let fingerprint = fingerprint.to_ascii_lowercase();
        let retire = now_ms.saturating_add(grace.as_millis().min(i64::MAX as u128) as i64);
        let mut book = self.0.write().unwrap_or_else(|p| p.into_inner());
        let pins = book.pins.entry(addr.to_string()).or_default();
        for (fp, at) in pins.iter_mut() {
            if *fp != fingerprint && at.is_none() {
                *at = Some(retire);
            }
        }
        pins.insert(fingerprint, None);
    }

    /// [`PinBook::rotate`] at every address that pins `old` (a node's own certificate, or the
    /// peer's, rotated).
    pub fn rotate_everywhere(&self, old: &str, new: &str, now_ms: i64, grace: Duration) {
        let old = old.to_ascii_lowercase();
        let addrs: Vec<String> = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .pins
            .iter()
            .filter(|(_, pins)| pins.contains_key(&old))
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in addrs {
            self.rotate(&addr, new, now_ms, grace);
        }
    }

    /// What a handshake with `addr` may present at `now_ms` (retired pins are left out).
    pub fn pins_for(&self, addr: &str, now_ms: i64) -> Pins {
        let book = self.0.read().unwrap_or_else(|p| p.into_inner());
        let Some(pins) = book.pins.get(addr) else {
            return Pins::default();
        };
        Pins::new(
            pins.iter()
                .filter(|(_, retire)| retire.is_none_or(|at| at > now_ms))
                .map(|(fp, _)| fp.clone()),
        )
    }
}

/// Trusts a server certificate iff its fingerprint is pinned; still checks the handshake
/// signature, so the server must hold the pinned certificate's key.
#[derive(Debug)]
struct PinnedServer {
    pins: Pins,
    /// Only for checks (CK-1 `http` on https URLs): availability, not trust, is measured.
    accept_any: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint_of(end_entity);
        if self.accept_any || self.pins.contains(&presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NotPinned {
                    presented,
                    expected: self.pins.list(),
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration for `http` checks of https URLs: any certificate is accepted (the
/// handshake signature is still checked). Never used for Understudy's own links.
pub fn insecure_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer {
        pins: Pins::new(Vec::<String>::new()),
        accept_any: true,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(rustls_err("building the TLS client configuration"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that trusts servers by `pins` only, presents `client_identity` (the
/// node's own certificate) when given, and offers the `alpn` protocols.
pub fn client_config(
    pins: Pins,
    client_identity: Option<Arc<NodeIdentity>>,
    alpn: &[&str],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer {
        pins,
        accept_any: false,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(rustls_err("building the TLS client configuration"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_identity {
        Some(identity) => builder.with_client_cert_resolver(identity),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// Connects to `addr` (`HOST:PORT`) and completes a pinned TLS handshake within
/// [`CONNECT_TIMEOUT`]. A refused fingerprint comes back as [`TlsError::NotPinned`].
pub async fn connect(
    addr: &str,
    pins: &Pins,
    client_identity: Option<Arc<NodeIdentity>>,
    alpn: &[&str],
) -> Result<TlsStream<TcpStream>, TlsError> {
    let config = client_config(pins.clone(), client_identity, alpn)?;
    connect_with(config, addr, CONNECT_TIMEOUT).await
}

/// [`connect`] with a configuration built once by [`client_config`] and an explicit timeout; what
/// the runtime's reconnect loops use.
pub async fn connect_with(
    config: Arc<ClientConfig>,
    addr: &str,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    // Only used for SNI: the verifier ignores it. An IP address sends no SNI at all.
    let server_name = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()));
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| TlsError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|source| match NotPinned::from_io(&source) {
                Some(refused) => TlsError::NotPinned {
                    addr: addr.to_string(),
                    refused,
                },
                None => TlsError::Handshake {
                    addr: addr.to_string(),
                    source,
                },
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| TlsError::Timeout {
            addr: addr.to_string(),
            after: timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    /// Issue 12 item 2: a pin is for its address; a rotation retires the older pins after the
    /// grace period; the book survives a round trip through the store's JSON.
    #[test]
    fn pins_are_kept_per_address_and_retire_after_a_rotation() {
        let book = PinBook::default();
        book.add("a:1", "AA");
        book.add("b:1", "bb");
        assert!(book.pins_for("a:1", 0).contains("aa"));
        assert!(
            !book.pins_for("b:1", 0).contains("aa"),
            "not at another address"
        );
        assert!(book.pins_for("c:1", 0).list().is_empty());
        book.rotate("a:1", "cc", 1_000, Duration::from_secs(10));
        assert_eq!(book.pins_for("a:1", 10_999).list(), vec!["aa", "cc"]);
        assert_eq!(book.pins_for("a:1", 11_000).list(), vec!["cc"], "retired");
        book.rotate_everywhere("bb", "dd", 0, Duration::from_secs(1));
        assert_eq!(book.pins_for("b:1", 0).list(), vec!["bb", "dd"]);
        let again = PinBook::from_json(&book.to_json());
        assert_eq!(again.pins_for("b:1", 999).list(), vec!["bb", "dd"]);
        assert_eq!(again.pins_for("b:1", 1_000).list(), vec!["dd"]);
        assert!(PinBook::from_json(&serde_json::json!("garbage"))
            .pins_for("a:1", 0)
            .list()
            .is_empty());
    }

    /// Issue 12: the fingerprint the configuration names (`failover.peer`, a server's
    /// `URL#FINGERPRINT`) retires after a rotation like any other pin, also when the
    /// configuration names it again (every start, every `peer_trust`) and after a round trip
    /// through the store; configuring another one is the operator's word and replaces them.
    #[test]
    fn security_the_configured_fingerprint_retires_after_a_rotation() {
        let book = PinBook::default();
        assert!(book.configure("peer", "AA"));
        assert_eq!(book.pins_for("peer", 0).list(), vec!["aa"]);
        book.rotate("peer", "bb", 1_000, Duration::from_secs(10));
        assert!(
            !book.configure("peer", "aa"),
            "named again: nothing changes"
        );
        assert_eq!(book.pins_for("peer", 10_999).list(), vec!["aa", "bb"]);
        assert_eq!(book.pins_for("peer", 11_000).list(), vec!["bb"], "retired");
        let again = PinBook::from_json(&book.to_json());
        assert!(!again.configure("peer", "AA"));
        assert_eq!(
            again.pins_for("peer", 11_000).list(),
            vec!["bb"],
            "still retired after a restart"
        );
        assert!(
            again.configure("peer", "cc"),
            "the operator configured another"
        );
        assert_eq!(again.pins_for("peer", 11_000).list(), vec!["cc"]);
        // A book from before the configured fingerprints were kept: the configured one is
        // pinned (in use) unless the book already knows it.
        let old = PinBook::from_json(&serde_json::json!({"peer": {"aa": 5_000, "bb": null}}));
        old.configure("peer", "aa");
        assert_eq!(old.pins_for("peer", 5_000).list(), vec!["bb"]);
        old.configure("a:1", "dd");
        assert_eq!(old.pins_for("a:1", 0).list(), vec!["dd"]);
    }

    /// Issue 12 item 4: pins learned before pins were kept per address (the global `pins`
    /// list) apply to each address the configuration lists, and to no other.
    #[test]
    fn security_pins_learned_before_per_address_pins_are_carried_over() {
        let book = PinBook::default();
        book.carry_over(&["AA".into(), "bb".into()], &["a:1".into(), "b:1".into()]);
        assert_eq!(book.pins_for("a:1", 0).list(), vec!["aa", "bb"]);
        assert_eq!(book.pins_for("b:1", 0).list(), vec!["aa", "bb"]);
        assert!(book.pins_for("c:1", 0).list().is_empty());
        book.rotate("a:1", "cc", 0, Duration::from_secs(1));
        assert_eq!(book.pins_for("a:1", 1_000).list(), vec!["cc"], "and retire");
    }

    /// An echo server over the node's TLS config that first writes the client's fingerprint
    /// (or "-") as one line.
    async fn echo_server(identity: Arc<NodeIdentity>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let acceptor = TlsAcceptor::from(server_config(identity).expect("server config"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let who = peer_fingerprint(tls.get_ref().1).unwrap_or_else(|| "-".into());
                    if tls.write_all(format!("{who}\n").as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn read_line(tls: &mut TlsStream<TcpStream>) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while tls.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        String::from_utf8(line).expect("utf8")
    }

    async fn echo(tls: &mut TlsStream<TcpStream>, msg: &[u8]) {
        tls.write_all(msg).await.expect("write");
        let mut back = vec![0u8; msg.len()];
        tls.read_exact(&mut back).await.expect("read");
        assert_eq!(back, msg);
    }

    #[test]
    fn generated_certificate_has_sans_and_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let info = generate_certificate(
            dir.path(),
            &["192.0.2.7".parse().expect("ip")],
            &["monitor.example".into()],
        )
        .expect("generate");
        assert_eq!(info.fingerprint.len(), 64);
        for san in ["127.0.0.1", "localhost", "192.0.2.7", "monitor.example"] {
            assert!(
                info.sans.iter().any(|s| s == san),
                "{san} missing from {:?}",
                info.sans
            );
        }
        assert!(
            info.not_after.starts_with(|c: char| c.is_ascii_digit()),
            "{}",
            info.not_after
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f| {
                std::fs::metadata(dir.path().join(f))
                    .expect("stat")
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode(KEY_FILE), 0o600);
            assert_eq!(mode(CERT_FILE), 0o644);
        }
        // Loading finds the same certificate rather than making a new one.
        assert_eq!(load_or_generate(dir.path()).expect("load"), info);
        let fresh = tempfile::tempdir().expect("tempdir");
        let made = load_or_generate(fresh.path()).expect("generate on first use");
        assert_ne!(made.fingerprint, info.fingerprint);
    }

    #[tokio::test]
    async fn rotation_serves_the_new_certificate_and_keeps_old_connections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = generate_certificate(dir.path(), &[], &[]).expect("generate");
        let identity = NodeIdentity::load(dir.path()).expect("load");
        let addr = echo_server(identity.clone()).await;
        let pins = Pins::new([old.fingerprint.clone()]);

        let mut first = connect(&addr, &pins, None, &[ALPN_WIRE])
            .await
            .expect("connect");
        assert_eq!(
            read_line(&mut first).await,
            "-",
            "no client certificate was sent"
        );
        assert_eq!(
            peer_fingerprint(first.get_ref().1),
            Some(old.fingerprint.clone())
        );
        assert_eq!(
            first.get_ref().1.alpn_protocol(),
            Some(ALPN_WIRE.as_bytes())
        );
        echo(&mut first, b"before").await;

        let new = generate_certificate(dir.path(), &[], &[]).expect("rotate");
        assert_ne!(new.fingerprint, old.fingerprint);
        assert_eq!(
            identity.reload(dir.path()).expect("reload"),
            new.fingerprint
        );
        assert_eq!(identity.fingerprint(), new.fingerprint);

        // Until the new fingerprint is pinned, the client refuses it and says which one it saw.
        let err = connect(&addr, &pins, None, &[ALPN_WIRE])
            .await
            .expect_err("not pinned");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "server certificate fingerprint {} is not pinned (expected one of: {})",
                new.fingerprint, old.fingerprint
            )),
            "{msg}"
        );
        match err {
            TlsError::NotPinned { refused, .. } => assert_eq!(refused.presented, new.fingerprint),
            other => panic!("expected NotPinned, got {other:?}"),
        }

        pins.add(&new.fingerprint);
        let mut second = connect(&addr, &pins, None, &[ALPN_WIRE])
            .await
            .expect("connect");
        read_line(&mut second).await;
        assert_eq!(
            peer_fingerprint(second.get_ref().1),
            Some(new.fingerprint.clone())
        );
        echo(&mut second, b"after").await;
        // The connection made before the rotation is untouched.
        echo(&mut first, b"still here").await;
    }

    #[tokio::test]
    async fn client_certificate_identifies_the_client() {
        let server_dir = tempfile::tempdir().expect("tempdir");
        let client_dir = tempfile::tempdir().expect("tempdir");
        let server = generate_certificate(server_dir.path(), &[], &[]).expect("server cert");
        let client = generate_certificate(client_dir.path(), &[], &[]).expect("client cert");
        let addr = echo_server(NodeIdentity::load(server_dir.path()).expect("load")).await;
        let pins = Pins::new([server.fingerprint.to_uppercase()]);
        let identity = NodeIdentity::load(client_dir.path()).expect("client identity");
        let mut tls = connect(&addr, &pins, Some(identity), &[ALPN_HTTP])
            .await
            .expect("connect");
        assert_eq!(read_line(&mut tls).await, client.fingerprint);
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_HTTP.as_bytes()));
    }

    #[tokio::test]
    async fn a_mismatched_key_is_refused_and_the_old_certificate_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = generate_certificate(dir.path(), &[], &[]).expect("generate");
        let identity = NodeIdentity::load(dir.path()).expect("load");
        let other = tempfile::tempdir().expect("tempdir");
        generate_certificate(other.path(), &[], &[]).expect("generate");
        std::fs::copy(other.path().join(KEY_FILE), dir.path().join(KEY_FILE)).expect("copy key");
        let err = identity.reload(dir.path()).expect_err("mismatch refused");
        assert!(err.to_string().contains("does not go with"), "{err}");
        assert_eq!(identity.fingerprint(), first.fingerprint);
    }

    #[tokio::test]
    async fn connecting_to_a_closed_port_fails_cleanly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = connect(&addr, &Pins::default(), None, &[ALPN_WIRE])
            .await
            .expect_err("refused");
        assert!(matches!(err, TlsError::Connect { .. }), "{err:?}");
    }
}
