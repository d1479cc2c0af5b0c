"""tfoy on YARN: job specs, env shipping, skein applications and the `tfoy` command line."""
