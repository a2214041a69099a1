"""SQLite adapter (the laptop shape): the embedded store and the WAL connection helper the
local queue shares."""
