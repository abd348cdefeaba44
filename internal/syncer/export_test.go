package syncer

// Tracked is the number of SecretSyncs the controller keeps state for.
func (c *Controller) Tracked() int { return c.tracked() }

// CachedTokens is the number of service-account tokens cached.
func (c *Controller) CachedTokens() int { return c.tokens.len() }
