//! Tenant names: each becomes a directory under `--tsdb.path`, so a name must never escape it.

/// Longest tenant name accepted; well under every filesystem's name limit.
pub const MAX_TENANT_LEN: usize = 128;

/// Why a tenant name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    /// The name is empty.
    #[error("tenant name is empty")]
    Empty,
    /// The name is too long to be a directory name.
    #[error("tenant name is longer than {MAX_TENANT_LEN} bytes")]
    TooLong,
    /// The name would be hidden or alias `.`/`..`.
    #[error("tenant name must not start with '.'")]
    LeadingDot,
    /// The name would escape its directory or garble logs.
    #[error("tenant name contains a path separator or control character")]
    BadCharacter,
}

/// Checks that a tenant name is safe to use as a single directory name.
pub fn validate(name: &str) -> Result<(), TenantError> {
    if name.is_empty() {
        return Err(TenantError::Empty);
    }
    if name.len() > MAX_TENANT_LEN {
        return Err(TenantError::TooLong);
    }
    // Rejects ".", ".." and hidden names, which could alias the root or our own files.
    if name.starts_with('.') {
        return Err(TenantError::LeadingDot);
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(TenantError::BadCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_root_are_refused() {
        assert_eq!(validate("team-a"), Ok(()));
        assert_eq!(validate("default-tenant"), Ok(()));
        assert_eq!(validate(""), Err(TenantError::Empty));
        assert_eq!(validate(".."), Err(TenantError::LeadingDot));
        assert_eq!(validate("."), Err(TenantError::LeadingDot));
        assert_eq!(validate("a/../b"), Err(TenantError::BadCharacter));
        assert_eq!(validate("/etc"), Err(TenantError::BadCharacter));
        assert_eq!(validate("a\\b"), Err(TenantError::BadCharacter));
        assert_eq!(validate("a\nb"), Err(TenantError::BadCharacter));
        assert_eq!(validate("a\0b"), Err(TenantError::BadCharacter));
        assert_eq!(validate(&"x".repeat(129)), Err(TenantError::TooLong));
    }
}
