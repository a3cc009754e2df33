//! An end user's segments: the read behind `GET /public/v1/user/{userId}` and the erase behind
//! its `DELETE`, both from the user's reverse entries.

use std::collections::{HashMap, HashSet};

use super::keys::{HEAD_SK, REVERSE_PREFIX, head_pk, parse_head, parse_reverse_sk, user_pk};
use super::membership::{Change, Gen};
use super::{READ_CONCURRENCY, SegmentHead};
use crate::StoreError;
use crate::batch::{self, Consistency};
use crate::codec::{get_s, key};
use crate::dynamo::DynamoStore;
use domain::{AccountId, SegmentGuid};

/// Splits eventually consistent head reads into the memberships they settle and the
/// segments whose head must be read again strongly. A head settles its segment only when it
/// names exactly the generations the user's (strongly read) reverse entries name for it: the
/// user is then a member of its current generation, whatever replica answered. Otherwise
/// (head not found, or a generation the entries do not name, or entries of several
/// generations) the replica may be behind the write that made the membership: a segment
/// just created, or an override that kept the user; only a strong read can tell.
fn settle(
    generations: &HashMap<SegmentGuid, HashSet<String>>,
    replica: Vec<SegmentHead>,
) -> (Vec<SegmentHead>, Vec<SegmentGuid>) {
    let mut settled = Vec::with_capacity(replica.len());
    let mut seen = HashSet::with_capacity(replica.len());
    let mut unsettled = Vec::new();
    for head in replica {
        seen.insert(head.segment);
        match generations.get(&head.segment) {
            Some(g) if g.len() == 1 && g.contains(&head.generation) => settled.push(head),
            Some(_) => unsettled.push(head.segment),
            None => {}
        }
    }
    unsettled.extend(generations.keys().filter(|seg| !seen.contains(*seg)).copied());
    (settled, unsettled)
}

impl DynamoStore {
    /// Every segment of the account that has this user as a member: one `Query` of the user's
    /// reverse entries (strongly consistent), then one `BatchGetItem` of the heads they name,
    /// **eventually consistent** (½ read unit each). An entry counts only if its generation is
    /// the head's current one. A head read that does not settle it (see [`settle`]) is read
    /// again strongly, so a membership acknowledged before this call is always found: a
    /// third request, only for a segment overridden, created or deleted moments ago (or
    /// whose replaced generation the purge has not yet deleted).
    pub async fn user_segments(
        &self,
        account: &AccountId,
        user_id: &str,
    ) -> Result<Vec<SegmentHead>, StoreError> {
        let entries =
            self.query_prefix(&self.tables().segments, &user_pk(account, user_id), REVERSE_PREFIX).await?;
        let mut generations: HashMap<SegmentGuid, HashSet<String>> = HashMap::new();
        for item in &entries {
            if let Some((seg, generation)) = parse_reverse_sk(get_s(item, "sk")?) {
                generations.entry(seg).or_default().insert(generation);
            }
        }
        if generations.is_empty() {
            return Ok(Vec::new());
        }
        let read_heads = |segments: Vec<SegmentGuid>, consistency: Consistency| async move {
            let keys = segments.iter().map(|seg| key(head_pk(account, *seg), HEAD_SK.into())).collect();
            batch::get_all_with(
                self.client(),
                &self.tables().segments,
                keys,
                &["systemGuid", "segmentGuid", "externalId", "name", "generation", "createdAt", "updatedAt"],
                READ_CONCURRENCY,
                consistency,
            )
            .await?
            .iter()
            .map(|item| parse_head(account, item))
            .collect::<Result<Vec<_>, _>>()
        };
        let replica = read_heads(generations.keys().copied().collect(), Consistency::Eventual).await?;
        let (mut out, unsettled) = settle(&generations, replica);
        if !unsettled.is_empty() {
            let strong = read_heads(unsettled, Consistency::Strong).await?;
            out.extend(
                strong
                    .into_iter()
                    .filter(|h| generations.get(&h.segment).is_some_and(|g| g.contains(&h.generation))),
            );
        }
        out.sort_by_key(|h| (h.created_at, h.segment.to_string()));
        Ok(out)
    }

    /// Removes each user from every segment of the account, in shared transactions (a
    /// counter update per transaction, not per user); returns how many memberships.
    pub async fn remove_users_everywhere(
        &self,
        account: &AccountId,
        users: &[String],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let found =
            crate::concurrent::for_each_bounded(users.to_vec(), READ_CONCURRENCY, "user segments", |user| {
                let (store, account) = (self.clone(), account.clone());
                async move { Ok((store.user_segments(&account, &user).await?, user)) }
            })
            .await?;
        let mut gens: Vec<Gen> = Vec::new();
        let mut changes = Vec::new();
        for (heads, user) in found {
            for h in &heads {
                let g = Gen::of(h);
                let slot = gens.iter().position(|x| *x == g).unwrap_or_else(|| {
                    gens.push(g);
                    gens.len() - 1
                });
                changes.push(Change { slot, user_id: user.clone() });
            }
        }
        Ok(self.apply_changes(&gens, changes, false, now_ms).await?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::SystemGuid;

    fn head(segment: SegmentGuid, generation: &str) -> SegmentHead {
        SegmentHead {
            account: AccountId::parse("acme").unwrap(),
            system: SystemGuid::generate(),
            segment,
            external_id: None,
            name: "n".into(),
            generation: generation.into(),
            created_at: 1,
            updated_at: 1,
            count_shards: None,
        }
    }

    #[test]
    fn an_eventually_read_head_settles_only_what_it_cannot_have_missed() {
        let [fresh, behind, created, overridden, removed] = std::array::from_fn(|_| SegmentGuid::generate());
        let generations: HashMap<SegmentGuid, HashSet<String>> = [
            (fresh, vec!["g1"]),
            // The entry names a generation the replica's head does not (an override that kept
            // the user, not yet replicated): the user may be a member, read it strongly.
            (behind, vec!["g2"]),
            // Created moments ago: the replica has no head yet.
            (created, vec!["g1"]),
            // Entries of the replaced and the current generation (the purge has not run): the
            // replica's head may name the replaced one.
            (overridden, vec!["old", "new"]),
            // The user was overridden out: the replica names a newer generation (a strong read
            // confirms it; it costs a request only until the purge deletes the old entry).
            (removed, vec!["old"]),
        ]
        .into_iter()
        .map(|(s, g)| (s, g.into_iter().map(String::from).collect()))
        .collect();
        let replica =
            vec![head(fresh, "g1"), head(behind, "g1"), head(overridden, "old"), head(removed, "newer")];
        let (settled, mut unsettled) = settle(&generations, replica);
        assert_eq!(settled.iter().map(|h| h.segment).collect::<Vec<_>>(), vec![fresh]);
        unsettled.sort_by_key(|s| s.to_string());
        let mut want = vec![behind, created, overridden, removed];
        want.sort_by_key(|s| s.to_string());
        assert_eq!(unsettled, want);
    }
}
