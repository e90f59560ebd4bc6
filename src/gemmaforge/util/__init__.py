"""Small helpers shared by every part: output paths and atomic writes, JSON Lines, config files,
and the machine a number was measured on."""
