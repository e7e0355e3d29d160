"""Understanding and trusting trained models: attribution, feature pictures, attacks."""
