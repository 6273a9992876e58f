//! A tenant's tokens as its history says (pure): which token hashes are live, with which
//! role. A presented token is checked by the SHA-256 of its text, so no comparison runs
//! over the secret itself, and that hash is compared in constant time with every live
//! hash of the tenant (no early exit), so the answer's timing tells nothing of how much of
//! a hash matched, nor which of the tenant's tokens it was.

use fleet_events::enroll::TokenText;
use fleet_events::event::{Event, Role, TenantEvent};
use fleet_events::ids::TokenId;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// One live token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    pub id: TokenId,
    pub role: Role,
}

/// The tokens of one tenant, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBook {
    /// The tenant was created.
    pub exists: bool,
    /// Live tokens with the SHA-256 of their text, in the order of issue.
    live: Vec<([u8; 32], Issued)>,
    /// Every token ever issued, revoked or not, with its label.
    issued: Vec<(TokenId, Role, String, bool)>,
}

/// The SHA-256 of a token's text: what the log records.
pub fn hash(token: &TokenText) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl TokenBook {
    /// The book after `events` (events of other aggregates are ignored).
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut book = Self::default();
        for event in events {
            if let Event::Tenant(event) = event {
                book.apply(event);
            }
        }
        book
    }

    /// Applies one tenant event.
    pub fn apply(&mut self, event: &TenantEvent) {
        match event {
            TenantEvent::Created { .. } => self.exists = true,
            TenantEvent::TokenIssued {
                token,
                role,
                label,
                sha256,
            } => {
                let issued = Issued {
                    id: *token,
                    role: *role,
                };
                self.live.push((*sha256, issued));
                self.issued.push((*token, *role, label.clone(), false));
            }
            TenantEvent::TokenRevoked { token } => {
                self.live.retain(|(_, issued)| issued.id != *token);
                for entry in self.issued.iter_mut().filter(|e| e.0 == *token) {
                    entry.3 = true;
                }
            }
        }
    }

    /// The live token `token` is, if its role is one of `roles`. Takes the same time
    /// whichever live token matches, or none, however much of a hash does.
    pub fn check(&self, token: &TokenText, roles: &[Role]) -> Option<Issued> {
        let presented = hash(token);
        let mut found = Choice::from(0);
        let mut at = 0u64;
        for (index, (sha256, _)) in (0u64..).zip(&self.live) {
            let matched = sha256.ct_eq(&presented);
            at.conditional_assign(&index, matched);
            found |= matched;
        }
        // Past this point only the outcome is known, which the answer tells anyway.
        let at = usize::try_from(at).ok().filter(|_| bool::from(found))?;
        self.live
            .get(at)
            .map(|(_, issued)| *issued)
            .filter(|issued| roles.contains(&issued.role))
    }

    /// Whether `id` was issued and not revoked.
    pub fn is_live(&self, id: TokenId) -> bool {
        self.live.iter().any(|(_, issued)| issued.id == id)
    }

    /// Whether `id` was ever issued.
    pub fn was_issued(&self, id: TokenId) -> bool {
        self.issued.iter().any(|entry| entry.0 == id)
    }

    /// Every token ever issued: id, role, label, revoked.
    pub fn tokens(&self) -> &[(TokenId, Role, String, bool)] {
        &self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_events::ids::TenantId;

    fn tenant() -> TenantId {
        TenantId::new("acme").expect("slug")
    }

    fn issue(book: &mut TokenBook, token: &TokenText, role: Role) -> TokenId {
        let id = TokenId::generate();
        book.apply(&TenantEvent::TokenIssued {
            token: id,
            role,
            label: "test".into(),
            sha256: hash(token),
        });
        id
    }

    #[test]
    fn a_live_token_of_an_allowed_role_passes() {
        let mut book = TokenBook::default();
        let enroll = TokenText::from_secret(&tenant(), &[1; 32]);
        let admin = TokenText::from_secret(&tenant(), &[2; 32]);
        let unknown = TokenText::from_secret(&tenant(), &[3; 32]);
        let enroll_id = issue(&mut book, &enroll, Role::Enroll);
        issue(&mut book, &admin, Role::Admin);
        assert_eq!(
            book.check(&enroll, &[Role::Enroll]).map(|i| i.id),
            Some(enroll_id)
        );
        assert!(book.check(&admin, &[Role::Enroll]).is_none());
        assert!(book.check(&admin, &[Role::Enroll, Role::Admin]).is_some());
        assert!(book.check(&unknown, &[Role::Enroll, Role::Admin]).is_none());
    }

    #[test]
    fn a_revoked_token_fails() {
        let mut book = TokenBook::default();
        let token = TokenText::from_secret(&tenant(), &[1; 32]);
        let id = issue(&mut book, &token, Role::Enroll);
        assert!(book.is_live(id));
        book.apply(&TenantEvent::TokenRevoked { token: id });
        assert!(book.check(&token, &[Role::Enroll]).is_none());
        assert!(!book.is_live(id));
        assert!(book.was_issued(id));
        assert!(book.tokens()[0].3);
    }

    #[test]
    fn each_of_many_tokens_is_found_as_itself() {
        let mut book = TokenBook::default();
        let texts: Vec<TokenText> = (1..=4)
            .map(|n| TokenText::from_secret(&tenant(), &[n; 32]))
            .collect();
        let ids: Vec<TokenId> = texts
            .iter()
            .map(|text| issue(&mut book, text, Role::Admin))
            .collect();
        book.apply(&TenantEvent::TokenRevoked { token: ids[1] });
        let found: Vec<Option<TokenId>> = texts
            .iter()
            .map(|text| book.check(text, &[Role::Admin]).map(|i| i.id))
            .collect();
        assert_eq!(found, [Some(ids[0]), None, Some(ids[2]), Some(ids[3])]);
    }

    #[test]
    fn a_hash_matching_all_but_its_last_byte_fails() {
        let mut book = TokenBook::default();
        let token = TokenText::from_secret(&tenant(), &[1; 32]);
        let mut near = hash(&token);
        near[31] ^= 1;
        book.apply(&TenantEvent::TokenIssued {
            token: TokenId::generate(),
            role: Role::Admin,
            label: "near".into(),
            sha256: near,
        });
        assert!(book.check(&token, &[Role::Admin]).is_none());
    }

    #[test]
    fn folding_sees_creation() {
        let events = [Event::Tenant(TenantEvent::Created {
            name: "Acme".into(),
        })];
        assert!(TokenBook::fold(events.iter()).exists);
        assert!(!TokenBook::fold([].iter()).exists);
    }
}
