"""The league: the opponent pool with its ratings, and the level curriculum."""
