"""Serverless path: the AWS Lambda handler, its packager and verifier, the cost model.

Kept free of imports: the handler's cold start imports this package.
"""
