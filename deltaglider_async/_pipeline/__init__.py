"""The SDK's pipelines: put, get, delete (with reference GC), bulk, and reference election.

The facade (``_client.py``) maps boto3-shaped calls onto them; they depend on the storage port,
the reference cache, the codec runner and the delta formats, never on the facade.
"""
