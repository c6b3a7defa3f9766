//! Who a client certificate names, for `--receive.tenant-certificate-field`.

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AttributeTypeAndValue;

/// The certificate field a tenant is taken from, by Thanos' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertificateField {
    /// The subject's first `O`.
    #[value(name = "organization")]
    Organization,
    /// The subject's first `OU`.
    #[value(name = "organizationalUnit")]
    OrganizationalUnit,
    /// The subject's `CN`.
    #[value(name = "commonName")]
    CommonName,
}

impl CertificateField {
    /// The flag value that names this field.
    pub fn as_flag_value(self) -> &'static str {
        match self {
            CertificateField::Organization => "organization",
            CertificateField::OrganizationalUnit => "organizationalUnit",
            CertificateField::CommonName => "commonName",
        }
    }
}

/// The subject fields of a verified client certificate, attached to each request of its
/// connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// `CN` (the last one, as Go reads a subject).
    pub common_name: Option<String>,
    /// First `O`.
    pub organization: Option<String>,
    /// First `OU`.
    pub organizational_unit: Option<String>,
}

impl ClientIdentity {
    /// The subject of a DER certificate; `None` when it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        Some(ClientIdentity {
            // Go keeps the last CN of a subject (and the first O and OU, as Thanos reads them).
            common_name: subject
                .iter_common_name()
                .last()
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned),
            organization: first(subject.iter_organization()),
            organizational_unit: first(subject.iter_organizational_unit()),
        })
    }

    /// The value of `field`, as Thanos reads it.
    pub fn field(&self, field: CertificateField) -> Option<&str> {
        match field {
            CertificateField::Organization => self.organization.as_deref(),
            CertificateField::OrganizationalUnit => self.organizational_unit.as_deref(),
            CertificateField::CommonName => self.common_name.as_deref(),
        }
        .filter(|v| !v.is_empty())
    }
}

fn first<'a, 'b: 'a>(
    mut it: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
) -> Option<String> {
    it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cn_o_and_ou() {
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "team-a");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "org-b");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "unit-c");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = ClientIdentity::from_der(cert.der()).unwrap();
        assert_eq!(id.field(CertificateField::CommonName), Some("team-a"));
        assert_eq!(id.field(CertificateField::Organization), Some("org-b"));
        assert_eq!(
            id.field(CertificateField::OrganizationalUnit),
            Some("unit-c")
        );
        assert_eq!(
            ClientIdentity::default().field(CertificateField::CommonName),
            None
        );
        assert!(ClientIdentity::from_der(b"not a certificate").is_none());
    }
}
