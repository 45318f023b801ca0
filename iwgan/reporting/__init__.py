"""Reports rebuilt from results/ alone."""
