//! Placeholder: being written.

use crate::{Ctx, File};

pub(crate) fn render(_ctx: &Ctx<'_>) -> Vec<File> {
    Vec::new()
}
