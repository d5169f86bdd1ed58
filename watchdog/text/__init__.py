"""Text from outside and text people write: printable output, version strings, byte sizes."""
