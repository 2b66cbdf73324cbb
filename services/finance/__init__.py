"""Finance: supervised accounts, prepaid orders released lesson by lesson (一课一销),
refunds, the working-day clocks, and each institution's risk level."""
