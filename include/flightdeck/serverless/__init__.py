"""Serverless path: one request/response core (`core`) behind the AWS Lambda, Google Cloud
Functions and Azure Functions handlers, their packager and verifier, the cost model.

Kept free of imports: every handler's cold start imports this package.
"""
