//! A page of judged rows, de-duplicated by user: what is written between two checkpoints.

use std::collections::HashMap;

use domain::import::ImportMode;
use domain::user_data::{UserId, UserUpdate};

use crate::reader::RowNumber;

/// The rows of one page that pass, by user, in first-seen order.
#[derive(Default)]
pub struct Page {
    users: HashMap<UserId, Vec<(RowNumber, UserUpdate)>>,
    order: Vec<UserId>,
}

impl Page {
    /// Adds a row's update; when the page already holds that user with a plain row and this row
    /// is plain too, returns the earlier row's number (now superseded): the later row wins (in
    /// `merge`, over the earlier's values). Rows with operations or a source time are kept in
    /// order and each applied: an increment or a stale row cannot be folded into another.
    pub fn add(&mut self, number: RowNumber, update: UserUpdate, mode: ImportMode) -> Option<RowNumber> {
        let user = update.user_id.clone();
        let Some(rows) = self.users.get_mut(&user) else {
            self.order.push(user.clone());
            self.users.insert(user, vec![(number, update)]);
            return None;
        };
        if let [(earlier, previous)] = rows.as_mut_slice()
            && previous.is_plain()
            && update.is_plain()
        {
            let superseded = *earlier;
            *previous = match mode {
                ImportMode::Merge => {
                    merge_updates(std::mem::replace(previous, UserUpdate::plain(user, Vec::new())), update)
                }
                ImportMode::Replace => update,
            };
            *earlier = number;
            return Some(superseded);
        }
        rows.push((number, update));
        None
    }

    /// Each user's rows, in the order their users first appeared.
    pub fn users(&self) -> impl Iterator<Item = &[(RowNumber, UserUpdate)]> {
        self.order.iter().map(|id| self.users[id].as_slice())
    }

    /// The users whose one row is plain: what a `replace` puts whole.
    pub fn is_single_plain(rows: &[(RowNumber, UserUpdate)]) -> bool {
        matches!(rows, [(_, u)] if u.is_plain())
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
    UserUpdate::plain(later.user_id, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::user_data::AttrValue;

    #[test]
    fn a_later_rows_values_win_over_an_earlier_rows_in_merge() {
        let id = UserId::parse("u").unwrap();
        let v = |s: &str| AttrValue::String(s.into());
        let earlier = UserUpdate::plain(id.clone(), vec![(0, v("a")), (1, v("b"))]);
        let later = UserUpdate::plain(id, vec![(1, v("B")), (2, v("C"))]);
        assert_eq!(merge_updates(earlier, later).values, vec![(0, v("a")), (1, v("B")), (2, v("C"))]);
    }

    #[test]
    fn a_user_twice_in_a_page_is_written_once_and_the_earlier_row_is_named() {
        let u = |id: &str, s: &str| {
            UserUpdate::plain(UserId::parse(id).unwrap(), vec![(0, AttrValue::String(s.into()))])
        };
        let mut page = Page::default();
        assert_eq!(page.add(2, u("a", "1"), ImportMode::Replace), None);
        assert_eq!(page.add(3, u("b", "1"), ImportMode::Replace), None);
        assert_eq!(page.add(4, u("a", "2"), ImportMode::Replace), Some(2));
        let got: Vec<_> =
            page.users().map(|r| (r[0].1.user_id.as_str().to_string(), r[0].1.values.clone())).collect();
        assert_eq!(got[0], ("a".into(), vec![(0, AttrValue::String("2".into()))]));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn rows_with_operations_are_kept_in_order_never_superseded() {
        let id = UserId::parse("u").unwrap();
        let mut inc = UserUpdate::plain(id.clone(), Vec::new());
        inc.ops.increment.push((0, "1".into()));
        let mut page = Page::default();
        assert_eq!(page.add(2, inc.clone(), ImportMode::Merge), None);
        assert_eq!(page.add(3, inc.clone(), ImportMode::Merge), None);
        assert_eq!(page.add(4, UserUpdate::plain(id, Vec::new()), ImportMode::Merge), None);
        let rows: Vec<RowNumber> = page.users().next().unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(rows, [2, 3, 4]);
        assert!(!Page::is_single_plain(page.users().next().unwrap()));
    }
}
