"""Built-in method plugins; each module registers its methods through the public hook."""
