//! VIPA commands, status words and templates.
