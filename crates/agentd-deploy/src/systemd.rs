//! Placeholder: being written.

use crate::{Ctx, File, RenderError};

pub(crate) fn render(_ctx: &Ctx<'_>) -> Result<Vec<File>, RenderError> {
    Ok(Vec::new())
}
