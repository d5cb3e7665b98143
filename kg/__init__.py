"""relbridge.kg: knowledge graphs from extracted relations (RDF, a SPARQL store, exports, kg build)."""
