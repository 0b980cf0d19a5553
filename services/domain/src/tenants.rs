//! Tenants: the companies that call the API. Their identity, tier and status
//! live in the database; the tier sets their limits and is never read from a
//! token.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A tenant's identifier: a UUID assigned at creation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = uuid::Uuid::parse_str(s)
            .map_err(|_| InvalidValue(format!("`{s}` is not a tenant id (a UUID)")))?;
        Ok(Self(id.hyphenated().to_string()))
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that failed validation, with a message safe to show the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// The service tier; it sets the tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The default tier.
    Standard,
    /// Higher limits.
    Premium,
}

impl Tier {
    /// The tier's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Premium => "premium",
        }
    }
}

impl FromStr for Tier {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Tier::Standard),
            "premium" => Ok(Tier::Premium),
            other => Err(InvalidValue(format!(
                "unknown tier `{other}`: expected `standard` or `premium`"
            ))),
        }
    }
}

/// Whether a tenant may use the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// May call the API.
    Active,
    /// Every call is refused with 403; data is kept.
    Suspended,
    /// Offboarded: its data is gone, its credentials are refused; the
    /// record stays for its usage ledger. Set by deleting the tenant only.
    Deleted,
}

impl TenantStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deleted => "deleted",
        }
    }
}

impl FromStr for TenantStatus {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(TenantStatus::Active),
            "suspended" => Ok(TenantStatus::Suspended),
            other => Err(InvalidValue(format!(
                "unknown status `{other}`: expected `active` or `suspended`"
            ))),
        }
    }
}

/// A tenant record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// The tenant's id (UUID).
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Service tier.
    pub tier: Tier,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Its tokens issued (`iat`) before this time, Unix seconds, are
    /// refused: when it was last signed out everywhere (0: never).
    #[serde(skip)]
    pub tokens_valid_after: u64,
}

/// A validated tenant name: 1 to 200 characters, no control characters.
#[derive(Debug, Clone)]
pub struct TenantName(String);

impl TenantName {
    /// The name, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantName {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue("`name` must not be empty".into()));
        }
        if trimmed.chars().count() > 200 {
            return Err(InvalidValue("`name` must be at most 200 characters".into()));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InvalidValue(
                "`name` must not contain control characters".into(),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_normalized_uuids() {
        let id: TenantId = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
            .parse()
            .expect("uuid");
        assert_eq!(id.as_str(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        assert!("tenant-a".parse::<TenantId>().is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert!(TenantName::try_from("   ".to_owned()).is_err());
        assert!(TenantName::try_from("a\u{0007}b".to_owned()).is_err());
        assert!(TenantName::try_from("x".repeat(201)).is_err());
        assert_eq!(
            TenantName::try_from("  Acme  ".to_owned())
                .expect("valid")
                .0,
            "Acme"
        );
    }

    #[test]
    fn tiers_and_statuses_round_trip() {
        for tier in [Tier::Standard, Tier::Premium] {
            assert_eq!(tier.as_str().parse::<Tier>().expect("tier"), tier);
        }
        assert!("gold".parse::<Tier>().is_err());
        assert!("deleted".parse::<TenantStatus>().is_err());
    }
}
