//! What a till or PIN pad shows for each [`Prompt`] of a transaction.

use crate::txn::Prompt;

/// The wording a till or PIN pad shows for a prompt.
pub fn text(p: &Prompt) -> String {
    match p {
        Prompt::PresentCard => "INSERT, TAP OR SWIPE CARD".into(),
        Prompt::CardInserted => "CARD INSERTED".into(),
        Prompt::CardTapped => "CARD READ".into(),
        Prompt::CardSwiped => "CARD SWIPED".into(),
        Prompt::UseChip => "USE CHIP READER".into(),
        Prompt::SwipeCard => "CHIP ERROR: SWIPE CARD".into(),
        Prompt::ApplicationSelected { label } => {
            format!("APPLICATION {}", label.as_deref().unwrap_or("SELECTED"))
        }
        Prompt::EnterPin => "ENTER PIN".into(),
        Prompt::PinEntered => "PIN ENTERED".into(),
        Prompt::Status { text } => text.clone(),
        Prompt::Authorizing => "AUTHORIZING...".into(),
        Prompt::Completing => "PLEASE WAIT".into(),
        Prompt::RemoveCard => "REMOVE CARD".into(),
        Prompt::CardRemoved => "CARD REMOVED".into(),
        Prompt::Reversing => "REVERSING".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_have_till_wording() {
        assert_eq!(text(&Prompt::EnterPin), "ENTER PIN");
        assert_eq!(
            text(&Prompt::ApplicationSelected { label: None }),
            "APPLICATION SELECTED"
        );
    }
}
