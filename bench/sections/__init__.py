"""The benchmark sections; each takes (Results, Sizes, Progress) and adds its rows."""
