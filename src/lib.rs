//! emvbridge: the bridge between a point-of-sale application and a Verifone VIPA card reader.
