//! EMV tag dictionary, bit-field decoders and sensitive-data wrappers.
