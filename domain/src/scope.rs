//! OAuth2 scopes of the public API.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    EndUserUpdateWrite,
    EndUsersRead,
    EndUsersDelete,
    SegmentsRead,
    SegmentsWrite,
    IntegrationsRead,
    IntegrationsWrite,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::EndUserUpdateWrite,
        Scope::EndUsersRead,
        Scope::EndUsersDelete,
        Scope::SegmentsRead,
        Scope::SegmentsWrite,
        Scope::IntegrationsRead,
        Scope::IntegrationsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EndUserUpdateWrite => "endUserUpdate:write",
            Scope::EndUsersRead => "endUsers:read",
            Scope::EndUsersDelete => "endUsers:delete",
            Scope::SegmentsRead => "segments:read",
            Scope::SegmentsWrite => "segments:write",
            Scope::IntegrationsRead => "integrations:read",
            Scope::IntegrationsWrite => "integrations:write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, written as the space-separated list of RFC 6749 §3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeSet(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope '{0}'")]
pub struct UnknownScope(pub String);

impl ScopeSet {
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Parses a space-separated list. Empty means the empty set; an unknown name is an error.
    pub fn parse(list: &str) -> Result<Self, UnknownScope> {
        list.split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| Scope::parse(s).ok_or_else(|| UnknownScope(s.to_string())))
            .collect()
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_subset_of(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        ScopeSet(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_canonical_order() {
        let set = ScopeSet::parse("segments:write  endUserUpdate:write").unwrap();
        assert_eq!(set.to_string(), "endUserUpdate:write segments:write");
        assert!(set.contains(Scope::SegmentsWrite));
        assert!(!set.contains(Scope::SegmentsRead));
        assert_eq!(ScopeSet::all().iter().count(), 7);
    }

    #[test]
    fn unknown_and_case_variant_refused() {
        assert_eq!(ScopeSet::parse("users:read"), Err(UnknownScope("users:read".into())));
        assert!(ScopeSet::parse("Segments:read").is_err());
    }

    #[test]
    fn subset() {
        let all = ScopeSet::all();
        let some = ScopeSet::parse("segments:read").unwrap();
        assert!(some.is_subset_of(all));
        assert!(!all.is_subset_of(some));
        assert!(ScopeSet::default().is_subset_of(some));
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }
}
