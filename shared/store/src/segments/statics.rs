//! The static segments of one system, by guid only: what a rule may name in a segment
//! condition. One `Query` of the system partition's list entries (small items), read with the
//! system's rule segments when their compiled set is (re)loaded.

use super::keys::{LISTED_PREFIX, system_pk};
use crate::StoreError;
use crate::codec::get_s;
use crate::dynamo::DynamoStore;
use domain::{AccountId, SegmentGuid, SystemGuid};

impl DynamoStore {
    /// Every static segment of the system, in creation order.
    pub async fn static_segment_guids(
        &self,
        account: &AccountId,
        system: SystemGuid,
    ) -> Result<Vec<SegmentGuid>, StoreError> {
        let items =
            self.query_prefix(&self.tables().segments, &system_pk(account, system), LISTED_PREFIX).await?;
        items
            .iter()
            .map(|item| {
                let sk = get_s(item, "sk")?;
                sk.rsplit('#')
                    .next()
                    .and_then(|g| SegmentGuid::parse(g).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("segment list entry '{sk}'")))
            })
            .collect()
    }
}
