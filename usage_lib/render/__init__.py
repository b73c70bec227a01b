"""A usage report written for people: number formats and labels (`formatting`, `labels`),
files (`files`: JSON, CSV, zip, text), the offline HTML page (`offline_page`) and the
JavaScript it inlines (`assets`)."""
