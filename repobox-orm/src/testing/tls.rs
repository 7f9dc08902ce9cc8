//! Throwaway TLS certificates for the TLS fixture.

use std::path::PathBuf;

/// TLS material made at test time in a temporary folder: a CA, a server
/// certificate for `localhost` and `127.0.0.1` and a client certificate, both
/// signed by it, as PEM files. Removed when dropped.
#[derive(Debug)]
pub struct TlsFiles {
    dir: PathBuf,
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate for mutual TLS.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Makes a new CA and certificates signed by it.
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("repobox-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for the certificates");
        let fail = |e: rcgen::Error| -> ! { panic!("cannot make test certificates: {e}") };

        let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, format!("repobox test CA {n}"));
        let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| fail(e));

        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
            let mut params = CertificateParams::new(names).unwrap_or_else(|e| fail(e));
            params.extended_key_usages = vec![usage];
            params.distinguished_name.push(DnType::CommonName, "repobox test");
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap_or_else(|e| fail(e));
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a test certificate");
            path
        };
        TlsFiles {
            ca_cert: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            dir,
        }
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
