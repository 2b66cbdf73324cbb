"""The GraphQL gateway: the public contract in shared/contract/schema.graphql."""
