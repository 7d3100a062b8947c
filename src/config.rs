//! Port-mapper ports and cookie file: flags, environment variables, defaults.
