//! Test certificates: a CA and the server and client certificates it signs, as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Pem {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl Pem {
    /// The certificate's DER bytes, to compare with what a server presents.
    pub fn der(&self) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_file(&self.cert)
            .expect("certificate file")
            .to_vec()
    }

    /// Certificate and key concatenated, as `reqwest::Identity::from_pem` takes them.
    pub fn identity_pem(&self) -> Vec<u8> {
        let mut out = std::fs::read(&self.cert).expect("certificate");
        out.extend(std::fs::read(&self.key).expect("key"));
        out
    }
}

/// A certificate authority whose certificate is written to `<dir>/<name>-ca.pem`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    /// The CA certificate file.
    pub cert: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("CA certificate");
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, issuer.pem()).expect("writing the CA");
        Ca {
            issuer,
            dir: dir.to_path_buf(),
            cert,
        }
    }

    /// A certificate for `sans` (DNS names or IP addresses) usable by servers and, for peers
    /// that connect to each other, as a client, with subject CN `cn`.
    pub fn server(&self, file: &str, cn: &str, sans: &[&str]) -> Pem {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("server params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(file, params)
    }

    /// A client certificate with subject CN `cn` and, if given, O `org`.
    pub fn client(&self, file: &str, cn: &str, org: Option<&str>) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(file, params)
    }

    fn sign(&self, file: &str, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signing");
        let pem = Pem {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&pem.cert, cert.pem()).expect("writing a certificate");
        std::fs::write(&pem.key, key.serialize_pem()).expect("writing a key");
        pem
    }
}
