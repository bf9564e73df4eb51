"""HTTP only: dependencies, routes and error mapping; the logic lives in the domain packages."""
