"""Support for Django releases older than the newest the app is tested on (see docs/compatibility.md)."""
