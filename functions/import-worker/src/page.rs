//! A page of judged rows, de-duplicated by user: what is written between two checkpoints.

use std::collections::HashMap;

use domain::import::ImportMode;
use domain::user_data::{UserId, UserUpdate};

use crate::reader::RowNumber;

/// The rows of one page that pass, by user, in first-seen order.
#[derive(Default)]
pub struct Page {
    users: HashMap<UserId, (RowNumber, UserUpdate)>,
    order: Vec<UserId>,
}

impl Page {
    /// Adds a row's update; when the page already holds that user, returns the earlier row's
    /// number (now superseded): the later row wins (in `merge`, over the earlier's values).
    pub fn add(&mut self, number: RowNumber, update: UserUpdate, mode: ImportMode) -> Option<RowNumber> {
        let user = update.user_id.clone();
        match self.users.remove(&user) {
            Some((earlier, previous)) => {
                let merged = match mode {
                    ImportMode::Merge => merge_updates(previous, update),
                    ImportMode::Replace => update,
                };
                self.users.insert(user, (number, merged));
                Some(earlier)
            }
            None => {
                self.order.push(user.clone());
                self.users.insert(user, (number, update));
                None
            }
        }
    }

    /// The row that holds `user`'s update.
    pub fn row_of(&self, user: &UserId) -> Option<RowNumber> {
        self.users.get(user).map(|(row, _)| *row)
    }

    /// The updates in the order their users first appeared.
    pub fn updates(&self) -> impl Iterator<Item = &UserUpdate> {
        self.order.iter().map(|id| &self.users[id].1)
    }
}

/// `later`'s values over `earlier`'s: what applying both merges, in order, would leave.
fn merge_updates(earlier: UserUpdate, later: UserUpdate) -> UserUpdate {
    let mut values = earlier.values;
    for (i, v) in later.values {
        match values.iter_mut().find(|(j, _)| *j == i) {
            Some(slot) => slot.1 = v,
            None => values.push((i, v)),
        }
    }
    UserUpdate { user_id: later.user_id, values }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::user_data::AttrValue;

    #[test]
    fn a_later_rows_values_win_over_an_earlier_rows_in_merge() {
        let id = UserId::parse("u").unwrap();
        let v = |s: &str| AttrValue::String(s.into());
        let earlier = UserUpdate { user_id: id.clone(), values: vec![(0, v("a")), (1, v("b"))] };
        let later = UserUpdate { user_id: id, values: vec![(1, v("B")), (2, v("C"))] };
        assert_eq!(merge_updates(earlier, later).values, vec![(0, v("a")), (1, v("B")), (2, v("C"))]);
    }

    #[test]
    fn a_user_twice_in_a_page_is_written_once_and_the_earlier_row_is_named() {
        let u = |id: &str, s: &str| UserUpdate {
            user_id: UserId::parse(id).unwrap(),
            values: vec![(0, AttrValue::String(s.into()))],
        };
        let mut page = Page::default();
        assert_eq!(page.add(2, u("a", "1"), ImportMode::Replace), None);
        assert_eq!(page.add(3, u("b", "1"), ImportMode::Replace), None);
        assert_eq!(page.add(4, u("a", "2"), ImportMode::Replace), Some(2));
        let got: Vec<_> =
            page.updates().map(|x| (x.user_id.as_str().to_string(), x.values.clone())).collect();
        assert_eq!(got[0], ("a".into(), vec![(0, AttrValue::String("2".into()))]));
        assert_eq!(got.len(), 2);
    }
}
