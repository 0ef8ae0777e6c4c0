"""Ruby Core natsx."""
