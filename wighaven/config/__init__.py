"""Settings: the environment and twistd options, validated once at start-up into a frozen configuration."""
