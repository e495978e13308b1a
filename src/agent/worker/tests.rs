//! Unit tests of the worker over a fake nft.
