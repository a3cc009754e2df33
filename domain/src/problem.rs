//! What is wrong with a request, as the rules see it: the detail every 4xx body lists.

use serde::Serialize;

/// One problem found in a request: where (`index` of a list item and/or `path` into it) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
}

impl Problem {
    /// `reason` is what the caller reads: a rule's typed error, or a message.
    pub fn at(path: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self { index: None, path: Some(path.into()), reason: reason.to_string() }
    }
}
