"""Sample-size planning: inverse power-law learning curves and the cases needed for a target."""
